"""scTOP on arrays: per-type basis profiles and the least-squares projection onto them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import linalg, sparse

from .._kernels._sctop import csr_group_fraction_sums_float32
from .._settings import numba_threads
from ._dispatch import array_function
from ._offset import OffsetSparseMatrix
from ._rank_probit import as_csr, rank_probit_matrix

# Pivots of R below this fraction of the largest one mean the basis columns are (nearly) collinear.
RANK_TOLERANCE = 1e-8


def group_mean_fractions(matrix, group_codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean over the cells of each group of the library fractions ``x / Σx`` (groups × genes, float64).

    Cells with no counts contribute zero fractions but still count towards their group's size,
    as in ``sctop.process(..., average=True)``. Cells with a negative code are left out.

    Parameters
    ----------
    matrix
        Non-negative values, cells × genes: ndarray, CSR or CSC.
    group_codes
        Group of every cell, in ``0 … n_groups - 1``; ``-1`` for cells to leave out.
    n_groups
        Number of groups.
    """
    group_codes = np.asarray(group_codes)
    totals = np.asarray(matrix.sum(axis=1, dtype=np.float64)).ravel()
    kept = np.flatnonzero(group_codes >= 0)
    group_sizes = np.bincount(group_codes[kept], minlength=n_groups).astype(np.float64)
    safe_totals = np.where(totals[kept] > 0, totals[kept], np.inf)
    weights = 1.0 / (safe_totals * group_sizes[group_codes[kept]])
    averaging = sparse.csr_matrix((weights, (group_codes[kept], kept)), shape=(n_groups, matrix.shape[0]))
    # float64 weights make the product float64 whatever the dtype of the matrix
    if sparse.issparse(matrix):
        return (averaging @ matrix).toarray()
    return np.asarray(averaging @ np.asarray(matrix))


@array_function
def group_mean_fractions_float32(
    matrix, group_codes: np.ndarray, n_groups: int, *, n_threads: int | None = None
) -> np.ndarray:
    """:func:`group_mean_fractions` with the float32 rounding of ``sctop.process(..., average=True)``.

    ``sctop`` divides each cell by its total and averages the cells in float32, adding them
    one after the other (its genes × cells input has contiguous cells). The rounding decides
    which nearly equal genes tie once ``log2(1 + x)`` is taken in float32, so reproducing it
    reproduces ``sctop``'s ranks. Totals are exact for integer counts below 2**24 per cell.

    Parameters
    ----------
    matrix
        Non-negative values, cells × genes: ndarray, CSR or CSC.
    group_codes
        Group of every cell, in ``0 … n_groups - 1``; ``-1`` for cells to leave out.
    n_groups
        Number of groups.
    n_threads
        Thread limit for the numba kernel.
    """
    sums = np.zeros((n_groups, matrix.shape[1]), dtype=np.float32)
    add_group_fractions_float32(matrix, group_codes, sums, n_threads=n_threads)
    return fraction_sums_to_means(sums, group_codes)


def fraction_sums_to_means(sums: np.ndarray, group_codes: np.ndarray) -> np.ndarray:
    """Float32 running sums of each group's fractions divided by its number of cells (at least 1)."""
    group_codes = np.asarray(group_codes)
    counts = np.bincount(group_codes[group_codes >= 0], minlength=sums.shape[0])
    return sums / np.maximum(counts, 1).astype(np.float32)[:, None]


def add_group_fractions_float32(
    matrix, group_codes: np.ndarray, sums: np.ndarray, *, n_threads: int | None = None
) -> np.ndarray:
    """Add the rows of ``matrix`` as float32 library fractions to their group's running sum, in row order.

    ``sums`` (groups × genes, float32) is updated in place and returned.
    """
    csr = as_csr(matrix)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    group_codes = np.asarray(group_codes)
    row_totals = np.asarray(csr.sum(axis=1, dtype=np.float64)).ravel().astype(np.float32)
    kept = np.flatnonzero(group_codes >= 0)
    group_rows = kept[np.argsort(group_codes[kept], kind="stable")]
    group_indptr = np.concatenate([[0], np.cumsum(np.bincount(group_codes[kept], minlength=sums.shape[0]))])
    with numba_threads(n_threads):
        csr_group_fraction_sums_float32(
            csr.data, csr.indices, csr.indptr, row_totals, group_indptr, group_rows, sums
        )
    return sums


def basis_profiles(
    matrix,
    group_codes: np.ndarray,
    group_names: Sequence[str],
    *,
    match_sctop: bool = True,
    n_threads: int | None = None,
) -> np.ndarray:
    """The scTOP basis: per-group mean library fractions → rank → probit → unit norm (genes × groups, float64).

    Parameters
    ----------
    matrix
        Non-negative values, cells × genes: ndarray, CSR or CSC.
    group_codes
        Group of every cell, in ``0 … len(group_names) - 1``; ``-1`` for cells to leave out.
    group_names
        Name of every group (basis column), for error messages.
    match_sctop
        Average in float32 and rank ``log2(1 + mean)`` in float32, as the ``sctop`` package does
        (:func:`group_mean_fractions_float32`): nearly equal means tie, and mean fractions below
        about ``6e-8`` tie with the unexpressed genes. Otherwise rank the exact float64 means.
    n_threads
        Thread limit for the numba kernels.

    Raises
    ------
    ValueError
        If a group has no counts at all: its profile has no direction.
    """
    n_groups = len(group_names)
    if match_sctop:
        means = group_mean_fractions_float32(matrix, group_codes, n_groups, n_threads=n_threads)
        profiles = np.log2(np.float32(1.0) + means)
    else:
        profiles = group_mean_fractions(matrix, group_codes, n_groups)
    empty = np.flatnonzero(~profiles.any(axis=1))
    if empty.size:
        raise ValueError(
            f"The cells of {[group_names[i] for i in empty]} have no counts, so these types have no profile. "
            "Remove them, or their empty cells, first."
        )
    transformed = rank_probit_matrix(profiles, l2_normalize=True, dtype=np.float64, n_threads=n_threads)
    return transformed.toarray().T


def projection_weights(basis: np.ndarray, type_names=None) -> np.ndarray:
    """``W`` (genes × types) with ``W.T = (BᵀB)⁻¹Bᵀ``, so a cell's scTOP scores are ``s @ W``.

    Computed from the QR factorisation of ``B`` rather than the normal equations, which square
    its condition number.

    Parameters
    ----------
    basis
        Genes × types basis ``B``, restricted to the genes that will be scored.
    type_names
        Names of the columns, for the error message when two types cannot be told apart.
    """
    basis = np.asarray(basis, dtype=np.float64)
    n_genes, n_types = basis.shape
    if n_genes < n_types:
        raise ValueError(
            f"Only {n_genes} genes are shared for {n_types} basis types; the projection needs at least as "
            "many shared genes as types. Check the gene identifiers of the query and the basis."
        )
    orthonormal, triangular = linalg.qr(basis, mode="economic")
    pivots = np.abs(np.diag(triangular))
    degenerate = np.flatnonzero(pivots <= RANK_TOLERANCE * max(pivots.max(initial=0.0), np.finfo(float).tiny))
    if degenerate.size:
        names = list(type_names) if type_names is not None else list(range(n_types))
        raise ValueError(
            f"The basis columns {[names[i] for i in degenerate]} are linear combinations of the others on the "
            f"{n_genes} shared genes, so scores are not defined. Drop these types or use more shared genes."
        )
    return linalg.solve_triangular(triangular, orthonormal.T, lower=False).T


@array_function
def project_onto_basis(values: OffsetSparseMatrix | np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scTOP scores ``values @ weights`` (cells × types, float64) without densifying ``values``.

    Parameters
    ----------
    values
        rank_probit values of the cells over all their genes.
    weights
        Genes × types from :func:`projection_weights`, with zero rows for the genes the basis lacks.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if isinstance(values, OffsetSparseMatrix):
        return values.matmul(weights)
    return np.asarray(values, dtype=np.float64) @ weights
