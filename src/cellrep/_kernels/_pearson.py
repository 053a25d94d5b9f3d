"""Analytic Pearson residuals of a negative binomial offset model (Lause et al. 2021).

``mu = major_sum * minor_sum / total`` and ``r = (x - mu) / sqrt(mu + mu**2 / theta)``,
clipped to ``[-clip, clip]``. Entries with ``mu == 0`` (all-zero gene or cell) get 0.
The kernels fill a dense block of output rows ``start .. start + out.shape[0]``.
"""

import numba
import numpy as np


@numba.njit(inline="always")
def _residual(value, mu, inv_theta, clip):
    if mu <= 0.0:
        return 0.0
    residual = (value - mu) / np.sqrt(mu + mu * mu * inv_theta)
    return min(max(residual, -clip), clip)


@numba.njit(parallel=True, cache=True)
def pearson_sparse_block(data, indices, indptr, major_sums, minor_sums, total, inv_theta, clip, start, out):
    """Residuals of majors ``start ..`` of a CSR (cells major) or CSC (genes major, ``out`` transposed)."""
    for k in numba.prange(out.shape[0]):
        i = start + k
        scale = major_sums[i] / total
        for c in range(out.shape[1]):
            out[k, c] = _residual(0.0, scale * minor_sums[c], inv_theta, clip)
        for j in range(indptr[i], indptr[i + 1]):
            c = indices[j]
            out[k, c] = _residual(np.float64(data[j]), scale * minor_sums[c], inv_theta, clip)


@numba.njit(parallel=True, cache=True)
def pearson_dense_block(x, row_sums, column_sums, total, inv_theta, clip, start, out):
    """Residuals of dense rows ``start ..``; ``out`` may alias those rows of ``x``."""
    for k in numba.prange(out.shape[0]):
        i = start + k
        scale = row_sums[i] / total
        for c in range(out.shape[1]):
            out[k, c] = _residual(np.float64(x[i, c]), scale * column_sums[c], inv_theta, clip)
