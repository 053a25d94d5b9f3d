"""Per-group mean library fractions computed in float32, in the order the ``sctop`` package uses."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def csr_group_fraction_sums_float32(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    row_totals: np.ndarray,
    group_indptr: np.ndarray,
    group_rows: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Add to ``sums[g]`` the rows of group ``g`` as ``float32(x) / row_total``, one after the other.

    The rows of group ``g`` are ``group_rows[group_indptr[g]:group_indptr[g + 1]]``, added in that
    order to the float32 running sum: the rounding of ``sctop.process(..., average=True)`` on a
    genes × cells array whose cells are contiguous (so chunks of rows can be added in turn).
    Rows with a zero total add nothing. ``row_totals`` is float32; ``sums`` is float32, groups × columns.
    """
    n_groups = group_indptr.shape[0] - 1
    for group in numba.prange(n_groups):
        for position in range(group_indptr[group], group_indptr[group + 1]):
            row = group_rows[position]
            total = row_totals[row]
            if total == 0:
                continue
            for entry in range(indptr[row], indptr[row + 1]):
                sums[group, indices[entry]] += np.float32(data[entry]) / total
