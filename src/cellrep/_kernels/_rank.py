"""Rank → probit kernels on CSR rows.

Within a row all zeros share one average rank, so only the stored non-zero values are
ranked. Ranks are half-integers in ``[1, n_cols]``, so ``probit(rank / (n_cols + 1))`` is
read from a table indexed by twice the rank, computed once with ``scipy.special.ndtri``.

Counts are small integers with many ties, so a row whose non-integer values (if any) are
all at least ``count_bound`` is ranked by counting: a histogram of the integer values below
``count_bound`` gives every distinct value its average rank in O(nnz + largest value), and
its probit is looked up once per distinct value rather than once per entry. The few values
at or above ``count_bound`` are sorted and ranked after them. Other rows are sorted.
Both paths give the same ranks as a full sort. ``count_bound`` below 1 is read as 1 (zeros
are always counted).
"""

from __future__ import annotations

import numba
import numpy as np

# Default upper bound (exclusive) of the integer values ranked by counting.
COUNT_BOUND = 1024


@numba.njit(inline="always")
def _scan_row(values, count_bound):
    """``(n_positive, largest small integer, n_large, any fractional value below count_bound)``.

    Branch-free so that the loop vectorises.
    """
    n_positive = 0
    n_large = 0
    n_fractional = 0
    largest = np.int64(0)
    for k in range(values.size):
        value = values[k]
        small = value < count_bound
        n_positive += value != 0
        n_large += not small
        n_fractional += small & (value != np.floor(value))
        largest = max(largest, np.int64(value) if small else np.int64(0))
    return n_positive, largest, n_large, n_fractional > 0


@numba.njit(inline="always")
def _rank_sorted(values, positions, n_below, twice_ranks):
    """Twice the average rank of ``values[positions]``, which rank after ``n_below`` smaller entries.

    ``twice_ranks[k]`` belongs to ``values[positions[k]]``.
    """
    order = np.argsort(values[positions])
    n = order.size
    start = 0
    while start < n:
        end = start
        tied_value = values[positions[order[start]]]
        while end + 1 < n and values[positions[order[end + 1]]] == tied_value:
            end += 1
        # ranks n_below + start + 1 ... n_below + end + 1, averaged and doubled
        twice_rank = 2 * n_below + start + end + 2
        for k in range(start, end + 1):
            twice_ranks[order[k]] = twice_rank
        start = end + 1


@numba.njit(inline="always")
def _counted_twice_ranks(values, largest, n_zero, count_bound):
    """Twice the average rank of every integer value ``0 .. largest`` present in ``values`` (counting).

    Values at or above ``count_bound`` are ignored; ``n_zero`` counts stored and implicit zeros.
    Returns ``(counts, twice_rank_of_value, n_below_large)``: the number of entries of each value,
    twice its average rank (0 for absent values), and the number of entries below ``count_bound``.
    """
    # Four interleaved histograms: consecutive increments of one bin (frequent with counts)
    # would otherwise wait for each other's store. Values >= count_bound land in a spare bin.
    lanes = np.zeros((4, largest + 2), dtype=np.int64)
    for k in range(values.size):
        value = values[k]
        lanes[k & 3, np.int64(value) if value < count_bound else largest + 1] += 1
    counts = lanes.sum(axis=0)[: largest + 1]
    counts[0] = n_zero
    twice_rank_of_value = np.zeros(largest + 1, dtype=np.int64)
    n_below = 0
    for value in range(largest + 1):
        count = counts[value]
        if count:
            twice_rank_of_value[value] = 2 * n_below + count + 1
            n_below += count
    return counts, twice_rank_of_value, n_below


@numba.njit(inline="always")
def _large_positions(values, n_large, count_bound):
    positions = np.empty(n_large, dtype=np.int64)
    position = 0
    for k in range(values.size):
        if values[k] >= count_bound:
            positions[position] = k
            position += 1
    return positions


@numba.njit(cache=True)
def _row_twice_ranks(values, n_cols, count_bound, twice_ranks):
    """Fill ``twice_ranks`` with 2 × the average rank (1-based, over ``n_cols`` entries) of each value.

    Zeros (stored or implicit) take the lowest ranks; the number of zeros is returned.
    """
    n_positive, largest, n_large, fractional = _scan_row(values, count_bound)
    n_zero = n_cols - n_positive
    if fractional:
        positive = np.flatnonzero(values != 0)
        positive_ranks = np.empty(positive.size, dtype=np.int64)
        _rank_sorted(values, positive, n_zero, positive_ranks)
        twice_ranks[:] = n_zero + 1
        twice_ranks[positive] = positive_ranks
        return n_zero
    _, twice_rank_of_value, n_below = _counted_twice_ranks(values, largest, n_zero, count_bound)
    for k in range(values.size):
        twice_ranks[k] = twice_rank_of_value[np.int64(min(values[k], largest))]
    if n_large:
        large = _large_positions(values, n_large, count_bound)
        large_ranks = np.empty(n_large, dtype=np.int64)
        _rank_sorted(values, large, n_below, large_ranks)
        twice_ranks[large] = large_ranks
    return n_zero


@numba.njit(parallel=True, cache=True)
def csr_row_ranks(
    data: np.ndarray, indptr: np.ndarray, n_cols: int, count_bound: float = COUNT_BOUND
) -> tuple[np.ndarray, np.ndarray]:
    """Twice the average rank of every stored entry of each CSR row, and the zero count per row.

    Returns ``(twice_ranks, n_zeros)``: ``twice_ranks`` is aligned with ``data``; the zeros of
    row ``i`` all have twice-rank ``n_zeros[i] + 1``.
    """
    bound = max(float(count_bound), 1.0)  # zeros are always counted
    n_rows = indptr.shape[0] - 1
    twice_ranks = np.empty(data.shape[0], dtype=np.int64)
    n_zeros = np.empty(n_rows, dtype=np.int64)
    for row in numba.prange(n_rows):
        lo, hi = indptr[row], indptr[row + 1]
        n_zeros[row] = _row_twice_ranks(data[lo:hi], n_cols, bound, twice_ranks[lo:hi])
    return twice_ranks, n_zeros


@numba.njit(inline="always")
def _unit_factor(squared_norm, l2_normalize):
    if not l2_normalize:
        return 1.0
    return 1.0 / np.sqrt(squared_norm) if squared_norm > 0 else 0.0


@numba.njit(cache=True)
def _sorted_row_deltas(values, n_cols, probit_table, l2_normalize, count_bound, deltas):
    """Row deltas via per-entry ranks (any values); returns the row offset."""
    twice_ranks = np.empty(values.size, dtype=np.int64)
    n_zero = _row_twice_ranks(values, n_cols, count_bound, twice_ranks)
    zero_value = probit_table[n_zero + 1]
    squared_norm = n_zero * zero_value * zero_value
    for k in range(values.size):
        if values[k] != 0:
            z = probit_table[twice_ranks[k]]
            squared_norm += z * z
    factor = _unit_factor(squared_norm, l2_normalize)
    for k in range(values.size):
        deltas[k] = (probit_table[twice_ranks[k]] - zero_value) * factor
    return zero_value * factor


@numba.njit(cache=True)
def _counted_row_deltas(values, n_cols, probit_table, l2_normalize, count_bound, scan, deltas):
    """Row deltas with one probit per distinct small integer value; returns the row offset."""
    n_positive, largest, n_large, _ = scan
    n_zero = n_cols - n_positive
    counts, twice_rank_of_value, n_below = _counted_twice_ranks(values, largest, n_zero, count_bound)
    zero_value = probit_table[n_zero + 1]
    z_of_value = np.zeros(largest + 1)
    squared_norm = 0.0
    for value in range(largest + 1):
        if counts[value]:
            z = probit_table[twice_rank_of_value[value]]
            z_of_value[value] = z
            squared_norm += counts[value] * z * z
    z_large = np.empty(n_large)
    large = _large_positions(values, n_large, count_bound) if n_large else np.empty(0, dtype=np.int64)
    if n_large:
        large_ranks = np.empty(n_large, dtype=np.int64)
        _rank_sorted(values, large, n_below, large_ranks)
        for k in range(n_large):
            z = probit_table[large_ranks[k]]
            z_large[k] = z
            squared_norm += z * z
    factor = _unit_factor(squared_norm, l2_normalize)
    for value in range(largest + 1):
        z_of_value[value] = (z_of_value[value] - zero_value) * factor
    for k in range(values.size):
        deltas[k] = z_of_value[np.int64(min(values[k], largest))]
    for k in range(n_large):
        deltas[large[k]] = (z_large[k] - zero_value) * factor
    return zero_value * factor


@numba.njit(parallel=True, cache=True)
def csr_rank_probit(
    data: np.ndarray,
    indptr: np.ndarray,
    n_cols: int,
    probit_table: np.ndarray,
    l2_normalize: bool,
    deltas: np.ndarray,
    row_offsets: np.ndarray,
    count_bound: float = COUNT_BOUND,
) -> None:
    """Rank → probit (→ unit L2 norm) of each CSR row, written as deltas to the zero value.

    ``probit_table[k]`` must hold ``ndtri(k / (2 * (n_cols + 1)))``. ``deltas`` (aligned with
    ``data``) receives ``z_ij - z0_i`` and ``row_offsets[i]`` the value ``z0_i`` of the row's
    zeros, both multiplied by ``1 / ||z_i||`` when ``l2_normalize``. Rows whose norm is zero
    (all entries equal) are left at zero.
    """
    bound = max(float(count_bound), 1.0)  # zeros are always counted
    n_rows = indptr.shape[0] - 1
    for row in numba.prange(n_rows):
        lo, hi = indptr[row], indptr[row + 1]
        values = data[lo:hi]
        scan = _scan_row(values, bound)
        if scan[3]:  # a fractional value below the bound: rank by sorting
            row_offsets[row] = _sorted_row_deltas(
                values, n_cols, probit_table, l2_normalize, bound, deltas[lo:hi]
            )
        else:
            row_offsets[row] = _counted_row_deltas(
                values, n_cols, probit_table, l2_normalize, bound, scan, deltas[lo:hi]
            )
