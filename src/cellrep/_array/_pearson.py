"""Analytic Pearson residuals (dense output by nature) from dense, CSR or CSC counts."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._kernels._pearson import pearson_dense_block, pearson_sparse_block
from .._settings import numba_threads
from ._moments import column_sums, is_csc, row_sums
from ._normalize import stored_values

DEFAULT_CHUNK_SIZE = 10_000


def pearson_residuals_matrix(
    matrix,
    *,
    theta: float = 100.0,
    clip: float | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    copy: bool = False,
) -> np.ndarray:
    """Dense analytic Pearson residuals ``(x - mu) / sqrt(mu + mu² / theta)`` with ``mu = s_i t_g / T``.

    Parameters
    ----------
    matrix
        Counts, dense, CSR or CSC, cells as rows.
    theta
        Negative binomial overdispersion, shared by all genes (> 0).
    clip
        Residuals are clipped to ``[-clip, clip]``; ``None`` uses ``sqrt(n_cells)``.
    chunk_size
        Rows (genes for CSC) filled per kernel call.
    copy
        For float dense input, ``False`` overwrites ``matrix`` with the result.

    Returns
    -------
    A dense C-ordered array, float32 for float32 input and float64 otherwise. Entries of
    all-zero genes or cells (``mu == 0``) are 0.
    """
    if theta <= 0:
        raise ValueError(f"Pearson residuals need theta > 0, got {theta}.")
    n_cells, n_genes = matrix.shape
    clip = float(np.sqrt(n_cells)) if clip is None else float(clip)
    if clip < 0:
        raise ValueError(f"clip must be >= 0 or None, got {clip}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    dtype = np.float32 if stored_values(matrix).dtype == np.float32 else np.float64
    cell_totals, gene_totals = row_sums(matrix), column_sums(matrix)
    total = float(cell_totals.sum()) or 1.0
    dense_in_place = (
        not copy and isinstance(matrix, np.ndarray) and matrix.dtype == dtype and matrix.flags.c_contiguous
    )
    out = matrix if dense_in_place else np.empty((n_cells, n_genes), dtype=dtype)
    with numba_threads():
        if not sparse.issparse(matrix):
            for start in range(0, n_cells, chunk_size):
                block = out[start : start + chunk_size]
                pearson_dense_block(matrix, cell_totals, gene_totals, total, 1.0 / theta, clip, start, block)
            return out
        major_totals, minor_totals, target = (
            (gene_totals, cell_totals, out.T) if is_csc(matrix) else (cell_totals, gene_totals, out)
        )
        arrays = (matrix.data, matrix.indices, matrix.indptr)
        for start in range(0, target.shape[0], chunk_size):
            block = target[start : start + chunk_size]
            pearson_sparse_block(*arrays, major_totals, minor_totals, total, 1.0 / theta, clip, start, block)
    return out
