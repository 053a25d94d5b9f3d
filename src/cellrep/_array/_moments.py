"""Row and column totals and per-group column moments of dense, CSR and CSC matrices (float64)."""

from __future__ import annotations

import numba
import numpy as np
from scipy import sparse

from .._kernels._moments import blocked_dense_moments, blocked_minor_moments, major_moments_grouped_minor
from .._kernels._normalize import dense_row_sums, major_sums
from .._settings import numba_threads
from ._dispatch import array_function


def is_csr(matrix) -> bool:
    return sparse.issparse(matrix) and matrix.format == "csr"


def is_csc(matrix) -> bool:
    return sparse.issparse(matrix) and matrix.format == "csc"


@array_function
def row_sums(matrix) -> np.ndarray:
    """Float64 row totals of a dense, CSR or CSC matrix."""
    if is_csc(matrix):
        return column_sums(matrix.T)
    totals = np.empty(matrix.shape[0], dtype=np.float64)
    with numba_threads():
        if is_csr(matrix):
            major_sums(matrix.data, matrix.indptr, totals)
        else:
            dense_row_sums(np.asarray(matrix), totals)
    return totals


@array_function
def column_sums(matrix) -> np.ndarray:
    """Float64 column totals of a dense, CSR or CSC matrix."""
    if is_csc(matrix):
        return row_sums(matrix.T)
    return grouped_column_moments(matrix, with_squares=False)[0][0]


@array_function
def grouped_column_moments(
    matrix, groups: np.ndarray | None = None, n_groups: int = 1, *, with_squares: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-group column sums and (all-group) column sums of squares, accumulated in float64.

    Parameters
    ----------
    matrix
        Dense array, CSR or CSC matrix of shape ``(n_rows, n_columns)``.
    groups
        Integer group code per row in ``0 .. n_groups - 1``; rows with a negative code are
        ignored. ``None`` puts every row in group 0.
    n_groups
        Number of groups.
    with_squares
        Also return the column sums of squares over the rows with a non-negative group.

    Returns
    -------
    ``(sums, squares)`` with ``sums`` of shape ``(n_groups, n_columns)`` and ``squares`` of
    shape ``(n_columns,)`` (``None`` when ``with_squares`` is False).
    """
    n_rows, n_columns = matrix.shape
    groups = np.zeros(n_rows, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    n_squares = n_columns if with_squares else 0
    with numba_threads():
        if is_csc(matrix):
            sums = np.zeros((n_groups, n_columns))
            squares = np.zeros(n_squares)
            major_moments_grouped_minor(matrix.data, matrix.indices, matrix.indptr, groups, sums, squares)
        else:
            n_blocks = max(1, min(numba.get_num_threads(), n_rows))
            sums = np.zeros((n_blocks, n_groups, n_columns))
            squares = np.zeros((n_blocks, n_squares))
            if is_csr(matrix):
                blocked_minor_moments(matrix.data, matrix.indices, matrix.indptr, groups, sums, squares)
            else:
                blocked_dense_moments(np.asarray(matrix), groups, sums, squares)
            sums, squares = sums.sum(axis=0), squares.sum(axis=0)
    return sums, (squares if with_squares else None)
