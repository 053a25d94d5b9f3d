"""A dense-valued matrix kept as sparse deltas plus one constant per row.

``rank_probit`` gives every zero of a cell the same value, so its result is
``deltas + row_offsets[:, None]`` with ``deltas`` as sparse as the counts. Products,
column moments and row/column subsets are computed from the two parts, so scaling, PCA
and projection never build the dense cells × genes matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator

from ._dispatch import array_function


@dataclass(frozen=True, eq=False)
class OffsetSparseMatrix:
    """Matrix whose dense value is ``deltas.toarray() + row_offsets[:, None]``.

    Parameters
    ----------
    deltas
        Sparse CSR matrix (cells × genes) of differences to the row constant.
    row_offsets
        The value of every implicit entry, one per row.
    """

    deltas: sparse.csr_matrix
    row_offsets: np.ndarray

    def __post_init__(self) -> None:
        if not sparse.issparse(self.deltas):
            raise TypeError("deltas must be a scipy sparse matrix.")
        deltas = sparse.csr_matrix(self.deltas)
        offsets = np.asarray(self.row_offsets, dtype=deltas.dtype).ravel()
        if offsets.shape[0] != deltas.shape[0]:
            raise ValueError(
                f"row_offsets has {offsets.shape[0]} entries but deltas has {deltas.shape[0]} rows."
            )
        object.__setattr__(self, "deltas", deltas)
        object.__setattr__(self, "row_offsets", offsets)

    @property
    def shape(self) -> tuple[int, int]:
        return self.deltas.shape

    @property
    def dtype(self) -> np.dtype:
        return self.deltas.dtype

    ndim = 2

    @property
    def nbytes(self) -> int:
        return (
            self.deltas.data.nbytes
            + self.deltas.indices.nbytes
            + self.deltas.indptr.nbytes
            + self.row_offsets.nbytes
        )

    def __repr__(self) -> str:
        return f"OffsetSparseMatrix(shape={self.shape}, nnz={self.deltas.nnz}, dtype={self.dtype})"

    def toarray(self) -> np.ndarray:
        """The dense values (cells × genes). Builds the full matrix: use on small data only."""
        dense = self.deltas.toarray()
        dense += self.row_offsets[:, None]
        return dense

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def matmul(self, right: np.ndarray) -> np.ndarray:
        """``self @ right`` for a dense vector or matrix with ``n_genes`` rows."""
        right = np.asarray(right)
        product = self.deltas @ right
        if right.ndim == 1:
            return product + self.row_offsets * right.sum()
        return product + np.outer(self.row_offsets, right.sum(axis=0))

    def rmatmul(self, left: np.ndarray) -> np.ndarray:
        """``self.T @ left`` for a dense vector or matrix with ``n_cells`` rows."""
        left = np.asarray(left)
        product = self.deltas.T @ left
        offset_weight = self.row_offsets @ left
        if left.ndim == 1:
            return product + offset_weight
        return product + offset_weight[None, :]

    def __matmul__(self, right: np.ndarray) -> np.ndarray:
        return self.matmul(right)

    def __rmatmul__(self, left: np.ndarray) -> np.ndarray:
        return self.rmatmul(np.asarray(left).T).T

    def __getitem__(self, key) -> OffsetSparseMatrix:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        return OffsetSparseMatrix(self.deltas[rows][:, cols], self.row_offsets[rows])

    def as_linear_operator(self) -> LinearOperator:
        """A scipy LinearOperator for iterative solvers."""
        return LinearOperator(
            self.shape,
            matvec=self.matmul,
            matmat=self.matmul,
            rmatvec=self.rmatmul,
            rmatmat=self.rmatmul,
            dtype=self.dtype,
        )


@array_function
def offset_matrix(deltas, row_offsets: np.ndarray) -> OffsetSparseMatrix:
    """``deltas + row_offsets[:, None]`` kept implicit: an :class:`OffsetSparseMatrix` for in-memory
    deltas (a dask-backed equivalent for dask deltas, see :mod:`cellrep._array._dask`)."""
    return OffsetSparseMatrix(sparse.csr_matrix(deltas), row_offsets)
