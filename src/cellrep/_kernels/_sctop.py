"""Per-group mean library fractions computed in float32, in the order the ``sctop`` package uses."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def csr_group_mean_fractions_float32(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    row_totals: np.ndarray,
    group_indptr: np.ndarray,
    group_rows: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[g]`` = float32 mean over the rows of group ``g`` of ``float32(x) / row_total``.

    The rows of group ``g`` are ``group_rows[group_indptr[g]:group_indptr[g + 1]]``, summed one
    after the other into a float32 accumulator: the rounding of ``sctop.process(..., average=True)``
    on a genes × cells array whose cells are contiguous. Rows with a zero total add nothing but
    count towards the mean. ``row_totals`` is float32; ``out`` is float32, groups × columns.
    """
    n_groups = group_indptr.shape[0] - 1
    n_cols = out.shape[1]
    for group in numba.prange(n_groups):
        accumulator = np.zeros(n_cols, dtype=np.float32)
        start, stop = group_indptr[group], group_indptr[group + 1]
        for position in range(start, stop):
            row = group_rows[position]
            total = row_totals[row]
            if total == 0:
                continue
            for entry in range(indptr[row], indptr[row + 1]):
                accumulator[indices[entry]] += np.float32(data[entry]) / total
        count = np.float32(max(stop - start, 1))
        for column in range(n_cols):
            out[group, column] = accumulator[column] / count
