"""Implicitly centred and scaled matrices for PCA: products and column moments without densifying.

A PCA input ``(X + o 1ᵀ − 1 cᵀ) diag(1 / s)`` is kept as its parts: ``X`` (ndarray, CSR or CSC,
or the deltas of an :class:`OffsetSparseMatrix` with row offsets ``o``), the column centre ``c``
and scale ``s``. Products with a dense block apply the rank-one corrections on the small side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse

from .._kernels._pca_moments import csr_column_moments, csr_row_moments
from .._settings import numba_threads
from ._offset import OffsetSparseMatrix

DENSE_CHUNK_ROWS = 8192


def split_offsets(matrix) -> tuple[np.ndarray | sparse.csr_matrix | sparse.csc_matrix, np.ndarray | None]:
    """``(X, row_offsets)`` for an OffsetSparseMatrix, ``(matrix, None)`` for ndarray/CSR/CSC."""
    if isinstance(matrix, OffsetSparseMatrix):
        return matrix.deltas, matrix.row_offsets
    if sparse.issparse(matrix):
        if matrix.format not in ("csr", "csc"):
            matrix = matrix.tocsr()
        return matrix, None
    return np.asarray(matrix), None


def working_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32 (twice faster sparse products); everything else is computed in float64."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def _raw_moments(matrix, row_offsets: np.ndarray | None, n_threads: int | None) -> np.ndarray:
    """3 × n_cols float64: column sums of x, x² and x · row_offsets (stored entries only when sparse)."""
    n_rows, n_cols = matrix.shape
    weights = np.zeros(n_rows) if row_offsets is None else np.asarray(row_offsets, dtype=np.float64)
    if not sparse.issparse(matrix):
        moments = np.zeros((3, n_cols))
        for start in range(0, n_rows, DENSE_CHUNK_ROWS):
            block = np.asarray(matrix[start : start + DENSE_CHUNK_ROWS], dtype=np.float64)
            moments[0] += block.sum(axis=0)
            moments[1] += np.einsum("ij,ij->j", block, block)
            moments[2] += weights[start : start + DENSE_CHUNK_ROWS] @ block
        return moments
    with numba_threads(n_threads):
        if matrix.format == "csc":
            return csr_row_moments(matrix.data, matrix.indices, matrix.indptr, weights)
        buffers = np.empty((numba.get_num_threads(), 3, n_cols))
        return csr_column_moments(matrix.data, matrix.indices, matrix.indptr, weights, buffers)


def column_mean_var(matrix, *, ddof: int = 1, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance (float64) of an ndarray, CSR, CSC or OffsetSparseMatrix, in one pass."""
    values, row_offsets = split_offsets(matrix)
    n_rows = values.shape[0]
    sums, squares, cross = _raw_moments(values, row_offsets, n_threads)
    if row_offsets is not None:
        offsets = np.asarray(row_offsets, dtype=np.float64)
        sums = sums + offsets.sum()
        squares = squares + 2.0 * cross + offsets @ offsets
    mean = sums / max(n_rows, 1)
    variance = (squares - n_rows * mean**2) / max(n_rows - ddof, 1)
    return mean, np.maximum(variance, 0.0)


@dataclass
class CenteredScaledOperator:
    """The matrix ``A = (X + o 1ᵀ − 1 cᵀ) diag(1 / s)`` applied through products with dense blocks.

    Parameters
    ----------
    values
        ``X``: ndarray, CSR or CSC (cells × genes), in the working dtype.
    row_offsets
        ``o``, one constant per row added to every entry, or ``None``.
    center
        ``c``, subtracted from each column, or ``None``.
    scale
        ``s``, each column is divided by it, or ``None``.
    """

    values: np.ndarray | sparse.csr_matrix | sparse.csc_matrix
    row_offsets: np.ndarray | None = None
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def matmat(self, block: np.ndarray) -> np.ndarray:
        """``A @ block`` (n_rows × k, float64) for a dense ``block`` (n_cols × k)."""
        block = np.asarray(block, dtype=np.float64)
        if self.scale is not None:
            block = block / self.scale[:, None]
        product = np.asarray(self.values @ block.astype(self.values.dtype, copy=False), dtype=np.float64)
        if self.row_offsets is not None:
            product += np.outer(self.row_offsets, block.sum(axis=0))
        if self.center is not None:
            product -= self.center @ block
        return product

    def rmatmat(self, block: np.ndarray) -> np.ndarray:
        """``A.T @ block`` (n_cols × k, float64) for a dense ``block`` (n_rows × k)."""
        block = np.asarray(block, dtype=np.float64)
        product = np.asarray(self.values.T @ block.astype(self.values.dtype, copy=False), dtype=np.float64)
        if self.row_offsets is not None:
            product += self.row_offsets.astype(np.float64) @ block
        if self.center is not None:
            product -= np.outer(self.center, block.sum(axis=0))
        if self.scale is not None:
            product /= self.scale[:, None]
        return product


def build_operator(matrix, *, center: np.ndarray | None, scale: np.ndarray | None) -> CenteredScaledOperator:
    """Wrap ``matrix`` (ndarray, CSR, CSC or OffsetSparseMatrix) with a column centre and scale.

    Only the value array is converted to the working dtype (float32 or float64); sparse
    index arrays are shared, never copied.
    """
    values, row_offsets = split_offsets(matrix)
    dtype = working_dtype(values.dtype)
    values = values.astype(dtype, copy=False)
    offsets = None if row_offsets is None else np.asarray(row_offsets, dtype=np.float64)
    return CenteredScaledOperator(values, offsets, center, scale)
