"""Row normalization kernels: library sizes, per-row / per-column factors, fused log1p.

Every kernel reads ``data`` (any numeric dtype), computes in float64 and writes ``out``,
which may be ``data`` itself for an in-place update. ``apply_log`` turns the stored value
``v`` into ``log1p(v) * log_scale`` (``log_scale = 1 / log(base)``).

Rows are handled as slices indexed from 0, which lets LLVM drop the negative-index checks
and vectorise the loops (several times faster than indexing through ``indptr``).

CSR ``log_normalize`` takes two passes: :func:`major_count_stats` reads every row without
writing (sums, and what validates the input and sizes the log tables), then
:func:`log_normalize_major` writes. Both first read a row with a vectorised loop, which
streams it from memory with many loads in flight, and then run their slower loop on the
cached row: out of cache, that loop alone ran 1.3-1.8x slower than both together.
"""

import numba
import numpy as np

# Float64 sums may be reassociated (vectorised); the inputs are validated finite beforehand.
SUM_FASTMATH = {"reassoc", "contract"}
# Raw counts are small integers: counts 0 .. LOG_TABLE_SIZE - 1 of a row get their log1p from
# a per-row table (one log per distinct count instead of one per entry).
LOG_TABLE_SIZE = 256


@numba.njit(inline="always")
def _sum(values):
    total = np.float64(0.0)  # not a Python float, which would sum float32 in float32 without the JIT
    for j in range(values.size):
        total += values[j]
    return total


@numba.njit(inline="always")
def _sum_and_max_count(values):
    """Row sum, and its largest value capped at ``LOG_TABLE_SIZE`` if all are non-negative integers (else -1).

    Written with an integer max and bitwise flags so that the loop vectorises.
    """
    total = np.float64(0.0)
    largest = np.int32(0)
    other = False
    for j in range(values.size):
        value = values[j]
        total += value
        largest = max(largest, np.int32(min(value, LOG_TABLE_SIZE)))
        other |= (value < 0) | (value != np.floor(value))
    return total, -1 if other else int(largest)


@numba.njit(inline="always")
def _bit_range_and_fractional(values, bits):
    """Largest and smallest of ``bits`` (``values`` seen as integers), and whether a value is fractional.

    Integer extremes vectorise where a float maximum would not (it must handle NaN).
    """
    largest = bits.dtype.type(0)
    smallest = bits.dtype.type(0)
    fractional = False
    for j in range(values.size):
        largest = max(largest, bits[j])
        smallest = min(smallest, bits[j])
        fractional |= values[j] != np.floor(values[j])
    return largest, smallest, fractional


@numba.njit(inline="always")
def _scale(values, factor, out):
    """``out = values * factor``."""
    if values.ctypes.data == out.ctypes.data:  # in place: one array, so LLVM needs no overlap check
        for j in range(out.size):
            out[j] = out[j] * factor
    else:
        for j in range(values.size):
            out[j] = values[j] * factor


@numba.njit(inline="always")
def _log_normalize_values(values, factor, log_scale, max_count, out):
    """``out = log1p(values * factor) * log_scale``.

    ``max_count`` (at most ``LOG_TABLE_SIZE``; -1 when unknown) is the largest value when all
    values are non-negative integers. Then counts below ``LOG_TABLE_SIZE`` take their log from
    a table built for this row (one ``log1p`` per distinct count instead of one per value),
    and larger values, like every value of a row without a table, get their own ``log1p``.
    """
    table_size = min(max_count + 1, LOG_TABLE_SIZE)
    if table_size <= 0 or table_size > values.size:  # not counts, or a table would not pay off
        for j in range(values.size):
            out[j] = np.log1p(values[j] * factor) * log_scale
        return
    table = np.empty(table_size, dtype=out.dtype)
    for k in range(table_size):
        table[k] = np.log1p(k * factor) * log_scale
    if max_count < table_size:  # every value is in the table: no branch in the loop
        for j in range(values.size):
            out[j] = table[np.uint32(values[j])]
        return
    for j in range(values.size):
        value = values[j]  # compared before the conversion, which is undefined for huge values
        out[j] = table[np.uint32(value)] if value < table_size else np.log1p(value * factor) * log_scale


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def major_sums(data, indptr, out):
    """``out[i] = sum(data[indptr[i]:indptr[i + 1]])``: row sums of CSR, column sums of CSC."""
    for i in numba.prange(indptr.size - 1):
        out[i] = _sum(data[indptr[i] : indptr[i + 1]])


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def dense_row_sums(x, out):
    """``out[i] = x[i].sum()`` accumulated in float64."""
    for i in numba.prange(x.shape[0]):
        out[i] = _sum(x[i])


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def major_count_stats(data, bits, indptr, sums, largest_bits, smallest_bits, fractional):
    """One read of each CSR row: its sum and what :func:`_bit_range_and_fractional` finds.

    ``bits`` is ``data`` viewed as integers of the same width (``data`` itself for integer
    dtypes). For float data, ``largest_bits`` viewed back as floats is the largest
    non-negative value (NaN and +inf included) and ``smallest_bits < 0`` flags a set sign
    bit. Writes nothing else.
    """
    for i in numba.prange(indptr.size - 1):
        start, stop = indptr[i], indptr[i + 1]
        sums[i] = _sum(data[start:stop])  # also streams the row into the cache for the second loop
        largest_bits[i], smallest_bits[i], fractional[i] = _bit_range_and_fractional(
            data[start:stop], bits[start:stop]
        )


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def log_normalize_major(data, indptr, factors, max_counts, log_scale, out):
    """``out = log1p(data * factors[i]) * log_scale`` on CSR row ``i``, with log tables.

    ``max_counts[i]`` is the largest value of row ``i``, capped at ``LOG_TABLE_SIZE``, when
    its values are all non-negative integers, else -1 (see :func:`_log_normalize_values`).
    Returns the sum of the rows read ahead, which only keeps that read from being optimised away.
    """
    n_rows = indptr.size - 1
    read_ahead = 0.0
    for i in numba.prange(n_rows):
        start, stop = indptr[i], indptr[i + 1]
        if i + 1 < n_rows:
            read_ahead += _sum(data[stop : indptr[i + 2]])
        _log_normalize_values(data[start:stop], factors[i], log_scale, max_counts[i], out[start:stop])
    return read_ahead


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def normalize_major(data, indptr, target_sum, out, sums):
    """Fused pass per CSR row: sum it and scale it to ``target_sum``.

    Rows summing to zero stay zero; ``sums`` receives the row sums.
    """
    for i in numba.prange(indptr.size - 1):
        start, stop = indptr[i], indptr[i + 1]
        total = _sum(data[start:stop])
        sums[i] = total
        _scale(data[start:stop], target_sum / total if total > 0 else 0.0, out[start:stop])


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def normalize_dense_rows(x, target_sum, apply_log, log_scale, out, sums):
    """:func:`normalize_major`, optionally followed by log1p, on the rows of a 2-D array."""
    for i in numba.prange(x.shape[0]):
        total, max_count = _sum_and_max_count(x[i]) if apply_log else (_sum(x[i]), -1)
        sums[i] = total
        factor = target_sum / total if total > 0 else 0.0
        if apply_log:
            _log_normalize_values(x[i], factor, log_scale, max_count, out[i])
        else:
            _scale(x[i], factor, out[i])


@numba.njit(parallel=True, cache=True)
def multiply_major(data, indptr, factors, out):
    """``out[j] = data[j] * factors[i]`` for stored entries of major ``i`` (CSR row, CSC column)."""
    for i in numba.prange(indptr.size - 1):
        start, stop = indptr[i], indptr[i + 1]
        _scale(data[start:stop], factors[i], out[start:stop])


@numba.njit(parallel=True, cache=True)
def multiply_minor(data, indices, factors, apply_log, log_scale, out):
    """``out[j] = data[j] * factors[indices[j]]`` (CSR column factor, CSC row factor)."""
    for j in numba.prange(data.size):
        value = data[j] * factors[indices[j]]
        out[j] = np.log1p(value) * log_scale if apply_log else value
