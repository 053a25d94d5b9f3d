"""Implicitly centred and scaled matrices for PCA: products and column moments without densifying.

A PCA input ``(X + o 1ᵀ − 1 cᵀ) diag(1 / s)`` is kept as its parts: ``X`` (ndarray, CSR or CSC,
or the deltas of an :class:`OffsetSparseMatrix` with row offsets ``o``), the column centre ``c``
and scale ``s``. Products with a dense block apply the rank-one corrections on the small side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from scipy import sparse

from .._kernels._pca_moments import (
    csr_column_moments,
    csr_row_moments,
    csr_tile_bounds,
    csr_times_dense,
    csr_transpose_times_dense,
)
from .._settings import numba_threads
from ._dispatch import array_function
from ._offset import OffsetSparseMatrix
from ._pearson import PearsonResidualMatrix

DENSE_CHUNK_ROWS = 8192
TILE_BYTES = 512 * 2**10  # rows of a dense block one column tile reads or writes: a core's cache
TILES_PER_THREAD = 4
GATHER_CHUNK_ROWS = 256
SCATTER_CHUNK_ENTRIES = 2**21  # stored entries read by every tile while in the shared cache


def split_offsets(matrix) -> tuple[np.ndarray | sparse.csr_matrix | sparse.csc_matrix, np.ndarray | None]:
    """``(X, row_offsets)`` for an OffsetSparseMatrix, ``(matrix, None)`` for ndarray/CSR/CSC."""
    if isinstance(matrix, OffsetSparseMatrix):
        return matrix.deltas, matrix.row_offsets
    if isinstance(matrix, PearsonResidualMatrix):
        return matrix, None
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


def column_sums_squares(matrix, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 column sums and sums of squares of an in-memory ndarray, CSR, CSC, OffsetSparseMatrix or PearsonResidualMatrix."""
    if isinstance(matrix, PearsonResidualMatrix):
        return matrix.column_sums_squares(n_threads=n_threads)
    values, row_offsets = split_offsets(matrix)
    sums, squares, cross = _raw_moments(values, row_offsets, n_threads)
    if row_offsets is not None:
        offsets = np.asarray(row_offsets, dtype=np.float64)
        sums = sums + offsets.sum()
        squares = squares + 2.0 * cross + offsets @ offsets
    return sums, squares


def mean_var_from_sums(
    sums: np.ndarray, squares: np.ndarray, n_rows: int, ddof: int
) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and variance (``ddof``) from column sums and sums of squares over ``n_rows`` rows."""
    mean = sums / max(n_rows, 1)
    variance = (squares - n_rows * mean**2) / max(n_rows - ddof, 1)
    return mean, np.maximum(variance, 0.0)


@array_function
def column_mean_var(matrix, *, ddof: int = 1, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance (float64) of an ndarray, CSR, CSC, OffsetSparseMatrix or PearsonResidualMatrix, in one pass."""
    sums, squares = column_sums_squares(matrix, n_threads=n_threads)
    return mean_var_from_sums(sums, squares, matrix.shape[0], ddof)


def column_tiling(values, width: int, itemsize: int) -> np.ndarray:
    """Tile bounds (:func:`csr_tile_bounds`) of the CSR arrays of ``values`` (CSR, or CSC read as its transpose's CSR).

    A tile holds as many columns as fit ``TILE_BYTES`` of a ``width``-column dense block, and
    there are at least ``TILES_PER_THREAD`` per thread so the transposed product keeps every
    thread busy. Unsorted column indices get a single tile (the kernels need no order then).
    """
    n_rows, n_cols = values.shape[::-1] if values.format == "csc" else values.shape
    n_tiles = 1
    if values.has_sorted_indices:
        by_size = -(-n_cols * width * itemsize // TILE_BYTES)
        n_tiles = int(min(max(by_size, TILES_PER_THREAD * numba.get_num_threads()), max(n_cols, 1)))
    tile_columns = -(-n_cols // n_tiles) if n_cols else 1
    n_tiles = -(-n_cols // tile_columns) if n_cols else 1
    bounds = np.empty((n_rows, n_tiles + 1), dtype=np.int64)
    csr_tile_bounds(values.indices, values.indptr, tile_columns, bounds)
    return bounds


def sparse_dense_product(
    values,
    block: np.ndarray,
    *,
    transpose: bool,
    dtype=np.float64,
    n_threads: int | None = None,
    bounds: np.ndarray | None = None,
) -> np.ndarray:
    """``values @ block`` (or ``values.T @ block``) for CSR/CSC ``values``, computed in ``dtype``.

    A CSC matrix is the CSR matrix of its transpose, so each case is one of two kernels:
    "gathered" (each output row from one row of the CSR arrays, parallel over rows) or
    "scattered" (each thread adds all rows into its own column tiles of the output).
    ``bounds`` reuses a :func:`column_tiling` of ``values`` made for blocks of this width.
    """
    block = np.ascontiguousarray(block, dtype=dtype)
    n_rows, n_cols = values.shape
    n_out_rows, width = (n_cols if transpose else n_rows), block.shape[1]
    gathered = (values.format == "csr") != transpose
    product = np.empty((n_out_rows, width), dtype=dtype)
    with numba_threads(n_threads):
        if bounds is None:
            bounds = column_tiling(values, width, block.itemsize)
        if gathered:
            csr_times_dense(values.data, values.indices, bounds, block, product, GATHER_CHUNK_ROWS)
        else:
            rows_per_chunk = max(1, SCATTER_CHUNK_ENTRIES * bounds.shape[0] // max(values.nnz, 1))
            previous_chunksize = numba.set_parallel_chunksize(1)
            try:
                csr_transpose_times_dense(values.data, values.indices, bounds, block, product, rows_per_chunk)
            finally:
                numba.set_parallel_chunksize(previous_chunksize)
    return product


@dataclass
class CenteredScaledOperator:
    """The matrix ``A = (X + o 1ᵀ − 1 cᵀ) diag(1 / s)`` applied through products with dense blocks.

    Products are returned in float64; the rank-one corrections for ``o`` and ``c`` and the
    scaling are applied in float64 on the small side.

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
    n_threads
        Thread limit of the sparse product kernels.
    """

    values: np.ndarray | sparse.csr_matrix | sparse.csc_matrix
    row_offsets: np.ndarray | None = None
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    n_threads: int | None = None
    _tilings: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def _tiling(self, width: int, itemsize: int) -> np.ndarray:
        """The :func:`column_tiling` of the sparse values for this block shape, made once."""
        with numba_threads(self.n_threads):
            key = (width, itemsize, numba.get_num_threads())
            if key not in self._tilings:
                self._tilings[key] = column_tiling(self.values, width, itemsize)
        return self._tilings[key]

    def row_subset(self, rows: np.ndarray) -> CenteredScaledOperator:
        """The operator of the rows ``rows`` of ``A`` (same centre and scale); copies those rows."""
        offsets = None if self.row_offsets is None else self.row_offsets[rows]
        return CenteredScaledOperator(self.values[rows], offsets, self.center, self.scale, self.n_threads)

    def _product(self, block: np.ndarray, *, transpose: bool, low_precision: bool) -> np.ndarray:
        if isinstance(self.values, PearsonResidualMatrix):
            dtype = self.values.dtype if low_precision else np.float64
            product_of = self.values.rmatmul if transpose else self.values.matmul
            return product_of(block, dtype=dtype, n_threads=self.n_threads).astype(np.float64, copy=False)
        if sparse.issparse(self.values):
            dtype = np.dtype(self.values.dtype if low_precision else np.float64)
            bounds = self._tiling(block.shape[1], dtype.itemsize)
            product = sparse_dense_product(
                self.values, block, transpose=transpose, dtype=dtype, n_threads=self.n_threads, bounds=bounds
            )
            return product.astype(np.float64, copy=False)
        values = self.values.T if transpose else self.values
        return np.asarray(values @ block.astype(values.dtype, copy=False), dtype=np.float64)

    def matmat(self, block: np.ndarray, *, low_precision: bool = False) -> np.ndarray:
        """``A @ block`` (n_rows × k, float64) for a dense ``block`` (n_cols × k).

        ``low_precision``: multiply sparse float32 data in float32 (twice as fast; enough for
        the range finder of a randomized SVD, whose products only need to span a subspace).
        """
        block = np.asarray(block, dtype=np.float64)
        if self.scale is not None:
            block = block / self.scale[:, None]
        product = self._product(block, transpose=False, low_precision=low_precision)
        if self.row_offsets is not None:
            product += np.outer(self.row_offsets, block.sum(axis=0))
        if self.center is not None:
            product -= self.center @ block
        return product

    def rmatmat(self, block: np.ndarray, *, low_precision: bool = False) -> np.ndarray:
        """``A.T @ block`` (n_cols × k, float64) for a dense ``block`` (n_rows × k); see :meth:`matmat`."""
        block = np.asarray(block, dtype=np.float64)
        product = self._product(block, transpose=True, low_precision=low_precision)
        if self.row_offsets is not None:
            product += self.row_offsets @ block
        if self.center is not None:
            product -= np.outer(self.center, block.sum(axis=0))
        if self.scale is not None:
            product /= self.scale[:, None]
        return product


def build_operator(
    matrix, *, center: np.ndarray | None, scale: np.ndarray | None, n_threads: int | None = None
) -> CenteredScaledOperator:
    """Wrap ``matrix`` (ndarray, CSR, CSC or OffsetSparseMatrix) with a column centre and scale.

    Only the value array is converted to the working dtype (float32 or float64); sparse
    index arrays are shared, never copied.
    """
    values, row_offsets = split_offsets(matrix)
    if not isinstance(values, PearsonResidualMatrix):  # residual blocks are filled in the product's dtype
        values = values.astype(working_dtype(values.dtype), copy=False)
    offsets = None if row_offsets is None else np.asarray(row_offsets, dtype=np.float64)
    return CenteredScaledOperator(values, offsets, center, scale, n_threads)
