"""Analytic Pearson residuals from dense, CSR or CSC counts: dense, or kept implicit.

The residuals of a count matrix are dense by nature (almost none is zero), but they are a
fixed function of the counts and their cell and gene totals. :class:`PearsonResidualMatrix`
keeps only those (the counts shared, never copied) and produces dense blocks of at most
``block_bytes`` on demand, so products, column moments and gene subsets never hold the
dense cells × genes matrix.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .._kernels._pearson import pearson_dense_block, pearson_sparse_block
from .._settings import numba_threads
from .._validation import check_matrix_type
from ._dispatch import array_function
from ._moments import column_sums, is_csc, row_sums
from ._normalize import stored_values

DEFAULT_CHUNK_SIZE = 10_000
BLOCK_BYTES = 64 * 2**20  # dense residuals held at once by products and moments


def check_theta_clip(theta: float, clip: float | None) -> None:
    """Raise a ValueError unless ``theta > 0`` and ``clip`` is ``None`` or ``>= 0``."""
    if not theta > 0:
        raise ValueError(f"Pearson residuals need theta > 0, got {theta}.")
    if clip is not None and not clip >= 0:
        raise ValueError(f"clip must be >= 0 or None, got {clip}.")


def _checked_counts(counts):
    """``counts`` as an ndarray, CSR or CSC matrix; other types raise."""
    if not sparse.issparse(counts):
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ValueError(f"counts must be 2-dimensional, got shape {counts.shape}.")
    check_matrix_type(counts)
    return counts


def _row_key(key) -> slice | np.ndarray | list:
    """An index that keeps the axis: a single integer becomes a one-element list."""
    return [key] if isinstance(key, numbers.Integral) else key


@dataclass(frozen=True, eq=False)
class PearsonResidualMatrix:
    """The analytic Pearson residuals of ``counts``, computed block by block when needed.

    Entry ``(c, g)`` is ``(x_cg - mu_cg) / sqrt(mu_cg + mu_cg² / theta)`` clipped to
    ``[-clip, clip]``, with ``mu_cg = cell_totals[c] * gene_totals[g] / total``, and 0 where
    ``mu_cg == 0``. Values are float32 for float32 counts and float64 otherwise.

    Parameters
    ----------
    counts
        Cells × genes counts: ndarray, CSR or CSC. Shared, never copied: changing it changes
        the residuals.
    cell_totals
        Cell totals of the data the model was fitted on (float64).
    gene_totals
        Gene totals of that data (float64).
    total
        Its grand total.
    theta
        Negative binomial overdispersion (> 0).
    clip
        Residuals are clipped to ``[-clip, clip]``.
    block_bytes
        Bytes of the dense residual block that products and moments fill at a time.
    """

    counts: np.ndarray | sparse.csr_matrix | sparse.csc_matrix
    cell_totals: np.ndarray
    gene_totals: np.ndarray
    total: float
    theta: float
    clip: float
    block_bytes: int = BLOCK_BYTES

    def __post_init__(self) -> None:
        counts = _checked_counts(self.counts)
        for name, size in (("cell_totals", counts.shape[0]), ("gene_totals", counts.shape[1])):
            totals = np.asarray(getattr(self, name), dtype=np.float64).ravel()
            if totals.shape[0] != size:
                raise ValueError(f"{name} has {totals.shape[0]} entries, but the counts have {size}.")
            object.__setattr__(self, name, totals)
        check_theta_clip(self.theta, self.clip)
        if self.block_bytes < 1:
            raise ValueError(f"block_bytes must be positive, got {self.block_bytes}.")
        object.__setattr__(self, "counts", counts)
        for name in ("total", "theta", "clip"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_counts(cls, counts, *, theta: float = 100.0, clip: float | None = None) -> PearsonResidualMatrix:
        """Fit the offset model to ``counts``: float64 totals, ``clip=None`` gives ``sqrt(n_cells)``."""
        counts = _checked_counts(counts)
        clip = float(np.sqrt(counts.shape[0])) if clip is None else float(clip)
        check_theta_clip(theta, clip)
        cell_totals, gene_totals = row_sums(counts), column_sums(counts)
        total = float(cell_totals.sum()) or 1.0
        return cls(counts, cell_totals, gene_totals, total, theta, clip)

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if stored_values(self.counts).dtype == np.float32 else np.float64)

    ndim = 2

    @property
    def nbytes(self) -> int:
        """Bytes held (counts and totals), not those of the dense values."""
        parts = (
            (self.counts.data, self.counts.indices, self.counts.indptr)
            if sparse.issparse(self.counts)
            else (self.counts,)
        )
        return sum(part.nbytes for part in parts) + self.cell_totals.nbytes + self.gene_totals.nbytes

    def __repr__(self) -> str:
        kind = self.counts.format.upper() if sparse.issparse(self.counts) else "dense"
        return (
            f"PearsonResidualMatrix(shape={self.shape}, dtype={self.dtype}, counts={kind}, "
            f"theta={self.theta:g}, clip={self.clip:g})"
        )

    @property
    def _genes_major(self) -> bool:
        """CSC counts are filled gene by gene (blocks of the transposed residuals)."""
        return is_csc(self.counts)

    def fill(self, start: int, out: np.ndarray, *, n_threads: int | None = None) -> None:
        """Write rows ``start ..`` of the residuals into ``out`` (for CSC counts: rows of their transpose, genes × cells)."""
        inv_theta = 1.0 / self.theta
        with numba_threads(n_threads):
            if not sparse.issparse(self.counts):
                pearson_dense_block(
                    self.counts,
                    self.cell_totals,
                    self.gene_totals,
                    self.total,
                    inv_theta,
                    self.clip,
                    start,
                    out,
                )
                return
            major, minor = (
                (self.gene_totals, self.cell_totals)
                if self._genes_major
                else (self.cell_totals, self.gene_totals)
            )
            arrays = (self.counts.data, self.counts.indices, self.counts.indptr)
            pearson_sparse_block(*arrays, major, minor, self.total, inv_theta, self.clip, start, out)

    def _blocks(self, dtype, n_threads: int | None) -> Iterator[tuple[slice, np.ndarray]]:
        """``(span, block)`` over the residuals: cells × genes row blocks, or genes × cells for CSC.

        One buffer of at most ``block_bytes`` is reused: a block is only valid until the next.
        """
        n_major, n_minor = self.shape[::-1] if self._genes_major else self.shape
        step = max(1, self.block_bytes // max(n_minor * np.dtype(dtype).itemsize, 1))
        buffer = np.empty((min(step, n_major), n_minor), dtype=dtype)
        for start in range(0, n_major, step):
            block = buffer[: min(step, n_major - start)]
            self.fill(start, block, n_threads=n_threads)
            yield slice(start, start + block.shape[0]), block

    def toarray(self) -> np.ndarray:
        """The dense residuals (cells × genes, C order). Builds the full matrix: select genes first."""
        out = np.empty(self.shape, dtype=self.dtype)
        self.fill(0, out.T if self._genes_major else out)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def _operand(self, operand, n_rows: int, side: str, dtype) -> tuple[np.ndarray, np.dtype, bool]:
        operand = np.asarray(operand)
        if operand.ndim not in (1, 2) or operand.shape[0] != n_rows:
            raise ValueError(f"{side} must have {n_rows} rows, got shape {operand.shape}.")
        dtype = np.dtype(np.result_type(self.dtype, operand.dtype) if dtype is None else dtype)
        return operand.reshape(n_rows, -1).astype(dtype, copy=False), dtype, operand.ndim == 1

    def matmul(self, right, *, dtype=None, n_threads: int | None = None) -> np.ndarray:
        """``self @ right`` for a dense vector or matrix with ``n_genes`` rows.

        The residuals are filled in ``dtype`` (default: that of ``self @ right`` in numpy)
        one block at a time, and each block is multiplied by BLAS.
        """
        right, dtype, vector = self._operand(right, self.shape[1], "right", dtype)
        if self._genes_major:
            product = np.zeros((self.shape[0], right.shape[1]), dtype=dtype)
            for genes, block in self._blocks(dtype, n_threads):
                product += block.T @ right[genes]
        else:
            product = np.empty((self.shape[0], right.shape[1]), dtype=dtype)
            for cells, block in self._blocks(dtype, n_threads):
                np.matmul(block, right, out=product[cells])
        return product[:, 0] if vector else product

    def rmatmul(self, left, *, dtype=None, n_threads: int | None = None) -> np.ndarray:
        """``self.T @ left`` for a dense vector or matrix with ``n_cells`` rows; see :meth:`matmul`."""
        left, dtype, vector = self._operand(left, self.shape[0], "left", dtype)
        if self._genes_major:
            product = np.empty((self.shape[1], left.shape[1]), dtype=dtype)
            for genes, block in self._blocks(dtype, n_threads):
                np.matmul(block, left, out=product[genes])
        else:
            product = np.zeros((self.shape[1], left.shape[1]), dtype=dtype)
            for cells, block in self._blocks(dtype, n_threads):
                product += block.T @ left[cells]
        return product[:, 0] if vector else product

    def __matmul__(self, right) -> np.ndarray:
        return self.matmul(right)

    def __rmatmul__(self, left) -> np.ndarray:
        return self.rmatmul(np.asarray(left).T).T

    def column_sums_squares(self, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-gene sums and sums of squares (float64) of the residuals, from float64 blocks."""
        n_genes = self.shape[1]
        sums, squares = np.zeros(n_genes), np.zeros(n_genes)
        for span, block in self._blocks(np.float64, n_threads):
            if self._genes_major:
                sums[span] = block.sum(axis=1)
                squares[span] = np.einsum("ij,ij->i", block, block)
            else:
                sums += block.sum(axis=0)
                squares += np.einsum("ij,ij->j", block, block)
        return sums, squares

    def column_mean_var(
        self, *, ddof: int = 1, n_threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-gene mean and variance (float64) of the residuals, from float64 blocks."""
        n_cells = self.shape[0]
        sums, squares = self.column_sums_squares(n_threads=n_threads)
        mean = sums / max(n_cells, 1)
        variance = (squares - n_cells * mean**2) / max(n_cells - ddof, 1)
        return mean, np.maximum(variance, 0.0)

    def __getitem__(self, key) -> PearsonResidualMatrix:
        """Rows and/or columns (slices, integer or boolean arrays) of the residuals, still implicit.

        The subset keeps this matrix's totals, so its values are the same entries of the full
        residual matrix: ``residuals[:, genes].toarray()`` is the cheap way to densify a few genes.
        """
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        rows, columns = _row_key(rows), _row_key(columns)
        counts = self.counts[rows][:, columns]
        return PearsonResidualMatrix(
            counts,
            self.cell_totals[rows],
            self.gene_totals[columns],
            self.total,
            self.theta,
            self.clip,
            self.block_bytes,
        )


@array_function
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
    all-zero genes or cells (``mu == 0``) are 0. :class:`PearsonResidualMatrix` gives the
    same values without building it.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    residuals = PearsonResidualMatrix.from_counts(matrix, theta=theta, clip=clip)
    dtype = residuals.dtype
    dense_in_place = (
        not copy and isinstance(matrix, np.ndarray) and matrix.dtype == dtype and matrix.flags.c_contiguous
    )
    out = matrix if dense_in_place else np.empty(matrix.shape, dtype=dtype)
    target = out.T if residuals._genes_major else out
    for start in range(0, target.shape[0], chunk_size):
        residuals.fill(start, target[start : start + chunk_size])
    return out


@array_function
def implicit_pearson_residuals(counts, *, theta: float = 100.0, clip: float | None = None) -> PearsonResidualMatrix:
    """The residuals of ``counts`` kept implicit: :meth:`PearsonResidualMatrix.from_counts` (a dask-backed
    equivalent for dask counts, see :mod:`cellrep._array._dask`)."""
    return PearsonResidualMatrix.from_counts(counts, theta=theta, clip=clip)


@array_function
def pearson_residual_matrix(
    counts, cell_totals: np.ndarray, gene_totals: np.ndarray, total: float, theta: float, clip: float
) -> PearsonResidualMatrix:
    """The implicit residuals of ``counts`` under a fitted model (totals, theta, clip), in memory or dask-backed."""
    return PearsonResidualMatrix(counts, cell_totals, gene_totals, total, theta, clip)
