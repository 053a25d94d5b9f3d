"""Per-column (optionally per-group) sums and sums of squares, accumulated in float64.

These feed gene means / standard deviations (``pp.scale``), gene totals (Pearson residuals,
row totals of CSC) and ANOVA F-statistics (``pp.select_genes``). Cells whose group is
negative are skipped. ``squares`` may have a zero-length last axis to skip the squares.

Kernels that scatter into shared columns give each thread its own block of rows and its own
slice of ``sums`` / ``squares`` (first axis = block); the caller adds the blocks up.
"""

import numba
import numpy as np


@numba.njit(inline="always")
def _add(sums, squares, group, column, value, with_squares):
    sums[group, column] += value
    if with_squares:
        squares[column] += value * value


@numba.njit(parallel=True, cache=True)
def blocked_minor_moments(data, indices, indptr, groups, sums, squares):
    """CSR (rows grouped): ``sums[block, group, column]`` and ``squares[block, column]``."""
    n_blocks = sums.shape[0]
    n_major = indptr.size - 1
    with_squares = squares.shape[1] > 0
    for block in numba.prange(n_blocks):
        block_sums, block_squares = sums[block], squares[block]
        for i in range(block * n_major // n_blocks, (block + 1) * n_major // n_blocks):
            group = groups[i]
            if group < 0:
                continue
            for j in range(indptr[i], indptr[i + 1]):
                _add(block_sums, block_squares, group, indices[j], np.float64(data[j]), with_squares)


@numba.njit(parallel=True, cache=True)
def major_moments_grouped_minor(data, indices, indptr, groups, sums, squares):
    """CSC (rows grouped, columns major): ``sums[group, column]`` and ``squares[column]``."""
    with_squares = squares.shape[0] > 0
    for c in numba.prange(indptr.size - 1):
        for j in range(indptr[c], indptr[c + 1]):
            group = groups[indices[j]]
            if group < 0:
                continue
            _add(sums, squares, group, c, np.float64(data[j]), with_squares)


@numba.njit(parallel=True, cache=True)
def blocked_dense_moments(x, groups, sums, squares):
    """Dense rows grouped: ``sums[block, group, column]`` and ``squares[block, column]``."""
    n_blocks = sums.shape[0]
    n_rows = x.shape[0]
    with_squares = squares.shape[1] > 0
    for block in numba.prange(n_blocks):
        block_sums, block_squares = sums[block], squares[block]
        for i in range(block * n_rows // n_blocks, (block + 1) * n_rows // n_blocks):
            group = groups[i]
            if group < 0:
                continue
            for c in range(x.shape[1]):
                _add(block_sums, block_squares, group, c, np.float64(x[i, c]), with_squares)
