"""Row normalization kernels: library sizes, per-row / per-column factors, fused log1p.

Every kernel reads ``data`` (any numeric dtype), computes in float64 and writes ``out``,
which may be ``data`` itself for an in-place update. ``apply_log`` turns the stored value
``v`` into ``log1p(v) * log_scale`` (``log_scale = 1 / log(base)``).

Rows are handled as slices indexed from 0, which lets LLVM drop the negative-index checks
and vectorise the loops (several times faster than indexing through ``indptr``).
"""

import numba
import numpy as np

# Float64 sums may be reassociated (vectorised); the inputs are validated finite beforehand.
SUM_FASTMATH = {"reassoc", "contract"}
# Raw counts are small integers: rows whose values all lie in 0 .. LOG_TABLE_SIZE - 1 get their
# log1p from a per-row table (one log per distinct count instead of one per entry).
LOG_TABLE_SIZE = 256


@numba.njit(inline="always")
def _sum(values):
    total = 0.0
    for j in range(values.size):
        total += values[j]
    return total


@numba.njit(inline="always")
def _sum_and_table_size(values):
    """Row sum, and ``max + 1`` if every value is an integer in ``0 .. LOG_TABLE_SIZE - 1`` (else 0).

    Written with an integer max and bitwise flags so that the loop vectorises.
    """
    total = 0.0
    largest = np.int32(0)
    other = False
    for j in range(values.size):
        value = values[j]
        total += value
        largest = max(largest, np.int32(min(value, LOG_TABLE_SIZE)))
        other |= (value < 0) | (value >= LOG_TABLE_SIZE) | (value != np.floor(value))
    return total, 0 if other else int(largest) + 1


@numba.njit
def _scale_values(values, factor, apply_log, log_scale, table_size, out):
    """``out = values * factor``, then ``log1p(.) * log_scale`` when ``apply_log``.

    ``table_size`` from :func:`_sum_and_table_size` lets small-count rows take their logs
    from a per-row table.
    """
    if not apply_log:
        for j in range(values.size):
            out[j] = values[j] * factor
        return
    if table_size == 0 or table_size > values.size:  # not small counts, or a table would not pay off
        for j in range(values.size):
            out[j] = np.log1p(values[j] * factor) * log_scale
        return
    table = np.empty(table_size)
    for k in range(table_size):
        table[k] = np.log1p(k * factor) * log_scale
    for j in range(values.size):
        out[j] = table[np.uint32(values[j])]


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
def normalize_major(data, indptr, target_sum, apply_log, log_scale, out, sums):
    """Fused pass per CSR row: sum it, scale it to ``target_sum``, optionally log1p it.

    Rows summing to zero stay zero; ``sums`` receives the row sums.
    """
    for i in numba.prange(indptr.size - 1):
        start, stop = indptr[i], indptr[i + 1]
        total, table_size = (
            _sum_and_table_size(data[start:stop]) if apply_log else (_sum(data[start:stop]), 0)
        )
        sums[i] = total
        factor = target_sum / total if total > 0 else 0.0
        _scale_values(data[start:stop], factor, apply_log, log_scale, table_size, out[start:stop])


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def normalize_dense_rows(x, target_sum, apply_log, log_scale, out, sums):
    """Dense counterpart of :func:`normalize_major` on a 2-D array."""
    for i in numba.prange(x.shape[0]):
        total, table_size = _sum_and_table_size(x[i]) if apply_log else (_sum(x[i]), 0)
        sums[i] = total
        factor = target_sum / total if total > 0 else 0.0
        _scale_values(x[i], factor, apply_log, log_scale, table_size, out[i])


@numba.njit(parallel=True, cache=True, fastmath=SUM_FASTMATH)
def multiply_major(data, indptr, factors, apply_log, log_scale, out):
    """``out[j] = data[j] * factors[i]`` for stored entries of major ``i`` (CSR row, CSC column)."""
    for i in numba.prange(indptr.size - 1):
        start, stop = indptr[i], indptr[i + 1]
        table_size = _sum_and_table_size(data[start:stop])[1] if apply_log else 0
        _scale_values(data[start:stop], factors[i], apply_log, log_scale, table_size, out[start:stop])


@numba.njit(parallel=True, cache=True)
def multiply_minor(data, indices, factors, apply_log, log_scale, out):
    """``out[j] = data[j] * factors[indices[j]]`` (CSR column factor, CSC row factor)."""
    for j in numba.prange(data.size):
        value = data[j] * factors[indices[j]]
        out[j] = np.log1p(value) * log_scale if apply_log else value
