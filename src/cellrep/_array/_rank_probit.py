"""The scTOP rank → probit transform on ndarray / CSR / CSC, returned as an :class:`OffsetSparseMatrix`."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse, special

from .._kernels._rank import csr_rank_probit
from .._settings import numba_threads
from ._dispatch import array_function
from ._offset import OffsetSparseMatrix


def probit_table(n_cols: int) -> np.ndarray:
    """``table[k] = Φ⁻¹(k / (2 (n_cols + 1)))`` for ``k = 0 … 2 n_cols``: the probit of every half-integer rank."""
    return special.ndtri(np.arange(2 * n_cols + 1, dtype=np.float64) / (2.0 * (n_cols + 1)))


def as_csr(matrix) -> sparse.csr_matrix:
    """``matrix`` as a CSR matrix; dense input keeps only its non-zeros, CSR input is not copied."""
    if sparse.issparse(matrix):
        return sparse.csr_matrix(matrix)
    return sparse.csr_matrix(np.asarray(matrix))


def warn_constant_cells(row_offsets: np.ndarray, *, stacklevel: int) -> None:
    """Warn about cells whose unit-norm rank-probit offset is zero, that is constant cells."""
    # a non-constant row always has a non-zero offset after normalization
    n_empty = int(np.count_nonzero(row_offsets == 0))
    if n_empty:
        warnings.warn(
            f"{n_empty} cells are constant (usually all zero); their rank-probit values are set to zero "
            "(a constant vector has no unit-norm direction). Filter them with `sc.pp.filter_cells(adata, min_counts=1)`.",
            UserWarning,
            stacklevel=stacklevel,
        )


@array_function
def rank_probit_matrix(
    matrix, *, l2_normalize: bool = True, dtype=np.float32, n_threads: int | None = None
) -> OffsetSparseMatrix:
    """Rank → probit transform of each row (cell), as in ``sctop.process``.

    Per row the values are ranked over all columns (ties averaged, ranks ``1 … G``), mapped
    to ``z = Φ⁻¹(rank / (G + 1))`` and optionally scaled to unit L2 norm. ``sctop`` ranks
    ``log2(1 + x / Σx)``; that map is strictly increasing within a row, so ranking ``x``
    itself gives the same ranks without rounding ties. All zeros of a row share one rank,
    so only the stored non-zeros are ranked: by counting for integer values (counts), by
    sorting otherwise, see :mod:`cellrep._kernels._rank`.

    Parameters
    ----------
    matrix
        Non-negative values (cells × genes): ndarray, CSR or CSC. Not validated here.
    l2_normalize
        Scale each row to unit L2 norm. Rows that are entirely zero have no direction:
        they come back as zeros, with a warning.
    dtype
        Float dtype of the result.
    n_threads
        Thread limit for the numba kernel.

    Returns
    -------
    The values as ``deltas + row_offsets[:, None]``, with ``deltas`` sharing the sparsity of
    the input (explicitly stored zeros keep a zero delta).
    """
    csr = as_csr(matrix)
    n_rows, n_cols = csr.shape
    deltas = np.empty(csr.nnz, dtype=dtype)
    row_offsets = np.empty(n_rows, dtype=dtype)
    if n_cols:
        with numba_threads(n_threads):
            csr_rank_probit(
                csr.data, csr.indptr, n_cols, probit_table(n_cols), l2_normalize, deltas, row_offsets
            )
    else:
        row_offsets[:] = 0
    if l2_normalize:
        warn_constant_cells(row_offsets, stacklevel=4)
    indices, indptr = csr.indices, csr.indptr
    if sparse.issparse(matrix) and matrix.format == "csr":
        # own index arrays: an in-place change of the input (e.g. sort_indices) must not misalign the deltas
        indices, indptr = indices.copy(), indptr.copy()
    result_deltas = sparse.csr_matrix((deltas, indices, indptr), shape=csr.shape)
    return OffsetSparseMatrix(result_deltas, row_offsets)
