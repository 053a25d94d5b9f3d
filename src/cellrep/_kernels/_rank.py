"""Rank → probit kernels on CSR rows.

Within a row all zeros share one average rank, so only the stored non-zero values are
sorted. Ranks are half-integers in ``[1, n_cols]``, so ``probit(rank / (n_cols + 1))`` is
read from a table indexed by twice the rank, computed once with ``scipy.special.ndtri``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _row_twice_ranks(values: np.ndarray, n_cols: int, twice_ranks: np.ndarray) -> int:
    """Fill ``twice_ranks`` with 2 × the average rank (1-based, over ``n_cols`` entries) of each value.

    Zeros (stored or implicit) take the lowest ranks; the number of zeros is returned.
    """
    n_stored = values.shape[0]
    n_positive = 0
    for k in range(n_stored):
        if values[k] != 0:
            n_positive += 1
    n_zero = n_cols - n_positive
    positive_positions = np.empty(n_positive, dtype=np.int64)
    position = 0
    for k in range(n_stored):
        if values[k] != 0:
            positive_positions[position] = k
            position += 1
        else:
            twice_ranks[k] = n_zero + 1
    order = np.argsort(values[positive_positions])
    start = 0
    while start < n_positive:
        end = start
        tied_value = values[positive_positions[order[start]]]
        while end + 1 < n_positive and values[positive_positions[order[end + 1]]] == tied_value:
            end += 1
        # ranks n_zero + start + 1 ... n_zero + end + 1, averaged and doubled
        twice_rank = 2 * n_zero + start + end + 2
        for k in range(start, end + 1):
            twice_ranks[positive_positions[order[k]]] = twice_rank
        start = end + 1
    return n_zero


@numba.njit(parallel=True, cache=True)
def csr_row_ranks(data: np.ndarray, indptr: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Twice the average rank of every stored entry of each CSR row, and the zero count per row.

    Returns ``(twice_ranks, n_zeros)``: ``twice_ranks`` is aligned with ``data``; the zeros of
    row ``i`` all have twice-rank ``n_zeros[i] + 1``.
    """
    n_rows = indptr.shape[0] - 1
    twice_ranks = np.empty(data.shape[0], dtype=np.int64)
    n_zeros = np.empty(n_rows, dtype=np.int64)
    for row in numba.prange(n_rows):
        lo, hi = indptr[row], indptr[row + 1]
        n_zeros[row] = _row_twice_ranks(data[lo:hi], n_cols, twice_ranks[lo:hi])
    return twice_ranks, n_zeros


@numba.njit(parallel=True, cache=True)
def csr_rank_probit(
    data: np.ndarray,
    indptr: np.ndarray,
    n_cols: int,
    probit_table: np.ndarray,
    l2_normalize: bool,
    deltas: np.ndarray,
    row_offsets: np.ndarray,
) -> None:
    """Rank → probit (→ unit L2 norm) of each CSR row, written as deltas to the zero value.

    ``probit_table[k]`` must hold ``ndtri(k / (2 * (n_cols + 1)))``. ``deltas`` (aligned with
    ``data``) receives ``z_ij - z0_i`` and ``row_offsets[i]`` the value ``z0_i`` of the row's
    zeros, both divided by the row's L2 norm when ``l2_normalize``. Rows whose norm is zero
    (all entries equal) are left at zero.
    """
    n_rows = indptr.shape[0] - 1
    for row in numba.prange(n_rows):
        lo, hi = indptr[row], indptr[row + 1]
        twice_ranks = np.empty(hi - lo, dtype=np.int64)
        n_zero = _row_twice_ranks(data[lo:hi], n_cols, twice_ranks)
        zero_value = probit_table[n_zero + 1]
        squared_norm = n_zero * zero_value * zero_value
        for k in range(hi - lo):
            if data[lo + k] != 0:
                z = probit_table[twice_ranks[k]]
                squared_norm += z * z
        factor = 1.0
        if l2_normalize:
            factor = 1.0 / np.sqrt(squared_norm) if squared_norm > 0 else 0.0
        for k in range(hi - lo):
            deltas[lo + k] = (probit_table[twice_ranks[k]] - zero_value) * factor
        row_offsets[row] = zero_value * factor
