"""Highly variable genes from per-batch moments read in place: shared moments and Seurat v3.

Implements the gene selections of :func:`scanpy.pp.highly_variable_genes` with the same
columns, values and selected genes, but reads the data in place: numba passes
(:mod:`cellrep._kernels._hvg`) give per-batch column sums and sums of squares, where scanpy
copies a row subset per batch, converts CSC to CSR, and copies dense or ``expm1`` data.

This module holds those moments and the ``'seurat_v3'`` and ``'seurat_v3_paper'`` flavours
(Stuart et al. 2019): every gene's counts are standardized by the variance that a loess of
log variance on log mean expects, outliers clipped, and genes ranked by the variance left.
The dispersion flavours ``'seurat'`` and ``'cell_ranger'`` are in
:mod:`cellrep._array._hvg_dispersion`.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from .._kernels._hvg import blocked_csr_batch_moments, blocked_dense_batch_moments, csc_batch_moments
from .._settings import numba_threads
from ._dispatch import array_function
from ._moments import is_csc, is_csr

SEURAT_V3_FLAVORS = ("seurat_v3", "seurat_v3_paper")
DISPERSION_FLAVORS = ("seurat", "cell_ranger")
# Fewest distinct mean values of varying genes a batch needs for the Seurat v3 loess fit. With
# span 0.3, scikit-misc's loess crashes the interpreter (segfault) on 3 or fewer genes and fails
# with 'svddc failed in l2fit', 'near singularities' or 'trL>n' up to about 15 (measured).
MIN_LOESS_GENES = 20
WHAT_TO_DO = (
    "Drop that batch (`adata = adata[adata.obs[batch_key] != name].copy()`), merge it with another "
    "batch, select genes without batch_key, or use flavor='seurat' / 'cell_ranger' on log-normalized data."
)


def check_batch_sizes(n_cells: np.ndarray, batch_names: list[str]) -> None:
    """Raise a ValueError naming every batch with fewer than 2 cells (no variance to rank genes by)."""
    small = [f"{batch_names[batch]} ({int(n_cells[batch])} cells)" for batch in np.flatnonzero(n_cells < 2)]
    if small:
        raise ValueError(
            f"Highly variable genes need at least 2 cells per batch, but {', '.join(small)} "
            f"{'has' if len(small) == 1 else 'have'} fewer. {WHAT_TO_DO}"
        )


def _bits(values: np.ndarray) -> np.ndarray:
    """``values`` seen as unsigned integers of the same width: the keys of the kernels' un-logging cache."""
    if values.dtype.kind != "f":
        return values
    return values.view(np.dtype(f"u{values.dtype.itemsize}"))


@array_function
def batch_moments(
    matrix,
    batches: np.ndarray,
    n_batches: int,
    *,
    clip: np.ndarray | None = None,
    expm1_scale: float = 0.0,
    with_positives: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-batch column sums and sums of squares (float64), optionally clipped or exponentiated.

    Parameters
    ----------
    matrix
        Dense array, CSR or CSC matrix, cells as rows.
    batches
        Batch code per row in ``0 .. n_batches - 1``; rows with a negative code are ignored.
    n_batches
        Number of batches.
    clip
        Upper bound per ``(batch, column)`` applied to every value before it is added;
        ``None`` clips nothing.
    expm1_scale
        When non-zero, ``expm1(value * expm1_scale)`` is accumulated instead of the value
        (rounded to float32 after each step for float32 data, as scanpy computes it).
    with_positives
        Also count the values > 0 per batch and column.

    Returns
    -------
    ``(sums, squares, positives)``, each of shape ``(n_batches, n_columns)``;
    ``positives`` is ``None`` unless ``with_positives``.
    """
    n_rows, n_columns = matrix.shape
    batches = np.asarray(batches, dtype=np.int64)
    clip = np.zeros((n_batches, 0)) if clip is None else np.ascontiguousarray(clip, dtype=np.float64)
    float32_values = matrix.dtype == np.float32
    n_counted = n_columns if with_positives else 0
    with numba_threads():
        settings = (batches, clip, expm1_scale, float32_values)
        if is_csc(matrix):
            sums, squares = np.zeros((2, n_batches, n_columns))
            positives = np.zeros((n_batches, n_counted))
            arrays = (matrix.data, _bits(matrix.data), matrix.indices, matrix.indptr)
            csc_batch_moments(*arrays, *settings, sums, squares, positives)
        else:
            n_blocks = max(1, min(numba.get_num_threads(), n_rows))
            sums, squares = np.zeros((2, n_blocks, n_batches, n_columns))
            positives = np.zeros((n_blocks, n_batches, n_counted))
            if is_csr(matrix):
                arrays = (matrix.data, _bits(matrix.data), matrix.indices, matrix.indptr)
                blocked_csr_batch_moments(*arrays, *settings, sums, squares, positives)
            else:
                values = np.asarray(matrix)
                blocked_dense_batch_moments(values, _bits(values), *settings, sums, squares, positives)
            sums, squares, positives = sums.sum(axis=0), squares.sum(axis=0), positives.sum(axis=0)
    return sums, squares, (positives if with_positives else None)


def mean_var(sums: np.ndarray, squares: np.ndarray, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance from column sums and sums of squares over ``n_obs`` rows.

    A single row keeps the biased variance (0) rather than dividing by zero, as scanpy does.
    """
    mean = sums / n_obs
    variance = squares / n_obs - mean**2
    if n_obs > 1:
        variance *= n_obs / (n_obs - 1)
    return mean, variance


def seurat_v3_table(
    matrix,
    batches: np.ndarray,
    n_batches: int,
    var_names: pd.Index,
    *,
    n_top: int,
    flavor: str = "seurat_v3",
    span: float = 0.3,
    with_batches: bool = False,
    batch_names: list[str] | None = None,
) -> pd.DataFrame:
    """The table ``scanpy.pp.highly_variable_genes(flavor=flavor, inplace=False)`` returns on raw counts.

    Parameters
    ----------
    matrix
        Dense array, CSR or CSC matrix of raw counts, cells as rows.
    batches
        Batch code per cell in ``0 .. n_batches - 1``, every code used.
    n_batches
        Number of batches.
    var_names
        Gene names, the index of the table.
    n_top
        Number of highly variable genes.
    flavor
        ``'seurat_v3'`` or ``'seurat_v3_paper'``: which of the two batch summaries (median
        rank, number of batches) decides first. They agree for a single batch.
    span
        Loess span.
    with_batches
        Whether a batch key was given (adds ``highly_variable_nbatches``).
    batch_names
        How to name each batch in error messages.

    Returns
    -------
    Columns ``means``, ``variances``, ``gene_name``, [``highly_variable_nbatches``],
    ``highly_variable_rank``, ``variances_norm``, ``highly_variable``, indexed by ``var_names``.
    """
    n_cells = np.bincount(batches, minlength=n_batches)
    batch_names = batch_names or [f"batch {batch}" for batch in range(n_batches)]
    check_batch_sizes(n_cells, batch_names)
    sums, squares, _ = batch_moments(matrix, batches, n_batches)
    batch_means = np.empty_like(sums)
    variances = np.empty_like(sums)
    for batch in range(n_batches):  # every batch checked before the first (compiled) loess fit
        batch_means[batch], variances[batch] = mean_var(sums[batch], squares[batch], int(n_cells[batch]))
        _check_loess_input(batch_means[batch], variances[batch], batch_names[batch], flavor)
    expected_variance = np.empty_like(sums)
    for batch in range(n_batches):
        expected_variance[batch] = _expected_variance(
            batch_means[batch], variances[batch], span, batch_names[batch], flavor
        )

    # Seurat v3 caps each count at sqrt(cells in batch) expected standard deviations above the mean.
    ceiling = batch_means + np.sqrt(n_cells)[:, None] * np.sqrt(expected_variance)
    clipped_sums, clipped_squares, _ = batch_moments(matrix, batches, n_batches, clip=ceiling)
    standardized = _standardized_variance(
        clipped_sums, clipped_squares, batch_means, expected_variance, n_cells[:, None]
    )

    median_rank, n_batches_in_top = _combine_batch_ranks(standardized, n_top)
    means, variances = mean_var(sums.sum(axis=0), squares.sum(axis=0), int(n_cells.sum()))
    table = pd.DataFrame({"means": means, "variances": variances}, index=var_names)
    table["gene_name"] = var_names
    if with_batches:
        table["highly_variable_nbatches"] = n_batches_in_top
    table["highly_variable_rank"] = median_rank
    table["variances_norm"] = standardized.mean(axis=0)
    table["highly_variable"] = _select_by_batch_summary(median_rank, n_batches_in_top, n_top, flavor)
    return table


def _check_loess_input(mean: np.ndarray, variance: np.ndarray, batch_name: str, flavor: str) -> None:
    """Raise a ValueError before scikit-misc's loess could crash or fail on too few distinct genes."""
    n_distinct = np.unique(mean[variance > 0]).size
    if n_distinct < MIN_LOESS_GENES:
        raise ValueError(
            f"flavor={flavor!r} fits a loess of variance on mean over the genes that vary in each batch, "
            f"but in {batch_name} only {n_distinct} distinct gene means vary (at least {MIN_LOESS_GENES} "
            f"needed; the batch is too small or nearly constant). {WHAT_TO_DO}"
        )


def _expected_variance(
    mean: np.ndarray,
    variance: np.ndarray,
    span: float,
    batch_name: str = "the data",
    flavor: str = "seurat_v3",
) -> np.ndarray:
    """Variance a degree-2 loess of log10 variance on log10 mean predicts for each gene.

    Genes constant in the batch are left out of the fit (their logarithm is undefined) and
    get 1; their standardized variance is 0 whatever the value.
    """
    from skmisc.loess import loess

    varying = variance > 0
    log_fit = np.zeros(mean.size)
    model = loess(np.log10(mean[varying]), np.log10(variance[varying]), span=span, degree=2)
    try:
        model.fit()
    except ValueError as error:  # a near-singular fit on few distinct means (checked input cannot crash)
        raise ValueError(
            f"The loess fit of flavor={flavor!r} failed in {batch_name} ({error}): too few distinct gene "
            f"means in that batch. {WHAT_TO_DO}"
        ) from error
    log_fit[varying] = model.outputs.fitted_values
    return 10**log_fit


def _standardized_variance(
    clipped_sums: np.ndarray,
    clipped_squares: np.ndarray,
    mean: np.ndarray,
    expected_variance: np.ndarray,
    n_cells: np.ndarray,
) -> np.ndarray:
    """Variance of the clipped counts around the unclipped mean, in units of the expected variance.

    ``sum((c - mean)**2) = sum(c**2) - 2 * mean * sum(c) + n * mean**2`` needs only the sums.
    """
    spread = clipped_squares - 2 * mean * clipped_sums + n_cells * mean**2
    return spread / ((n_cells - 1) * expected_variance)


def _combine_batch_ranks(standardized: np.ndarray, n_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Median rank over the batches that put a gene in their top ``n_top``, and how many do.

    Parameters
    ----------
    standardized
        Standardized variance of every gene (column) in every batch (row).
    n_top
        Size of each batch's top list.

    Returns
    -------
    ``(median_rank, n_batches_in_top)``; rank 0 is the most variable gene of a batch and
    genes in no top list get a NaN rank. Ranks are float32, the type scanpy reports.
    """
    # numpy's default sort breaks ties (constant genes) in the same order as scanpy's ranks
    order = np.argsort(-standardized, axis=1)
    ranks = np.empty(standardized.shape, dtype=np.float32)
    positions = np.arange(standardized.shape[1], dtype=np.float32)
    np.put_along_axis(ranks, order, np.broadcast_to(positions, order.shape), axis=1)

    in_top = ranks < n_top
    n_batches_in_top = in_top.sum(axis=0)
    ranked = n_batches_in_top > 0
    median_rank = np.full(standardized.shape[1], np.nan, dtype=np.float32)
    median_rank[ranked] = np.nanmedian(np.where(in_top, ranks, np.nan)[:, ranked], axis=0)
    return median_rank, n_batches_in_top


def _select_by_batch_summary(
    median_rank: np.ndarray, n_batches_in_top: np.ndarray, n_top: int, flavor: str
) -> np.ndarray:
    """Mask of the first ``n_top`` genes by median rank, then by number of batches (most first).

    ``'seurat_v3_paper'`` orders by the number of batches first. Unranked genes come last and
    full ties keep gene order.
    """
    keys = (-n_batches_in_top, median_rank)  # np.lexsort sorts by the last key first
    if flavor == "seurat_v3_paper":
        keys = keys[::-1]
    selected = np.zeros(median_rank.size, dtype=bool)
    selected[np.lexsort(keys)[:n_top]] = True
    return selected
