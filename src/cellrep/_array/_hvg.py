"""scanpy's highly variable genes from per-batch moments read in place (no copy of the data).

:func:`scanpy.pp.highly_variable_genes` copies the data it reads: a row subset per batch
(even for a single batch), a CSR conversion of CSC input and a float64 copy of dense input
for ``'seurat_v3'``, and a copy plus an ``expm1`` copy for ``'seurat'``. Here one or two
numba passes per call give the per-batch sums the statistics need; everything after those
sums (loess fit, binning, normalisation, ranking) is scanpy's code or mirrors it line by line
(scanpy 1.11, ``scanpy/preprocessing/_highly_variable_genes.py``).
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from .._kernels._hvg import blocked_csr_batch_moments, blocked_dense_batch_moments, csc_batch_moments
from .._settings import numba_threads
from ._moments import is_csc, is_csr

SEURAT_V3_FLAVORS = ("seurat_v3", "seurat_v3_paper")
DISPERSION_FLAVORS = ("seurat", "cell_ranger")


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
    if clip is None:
        clip = np.full((n_batches, n_columns), np.inf)
    clip = np.ascontiguousarray(clip, dtype=np.float64)
    float32_values = matrix.dtype == np.float32
    n_counted = n_columns if with_positives else 0
    with numba_threads():
        if is_csc(matrix):
            sums, squares = np.zeros((2, n_batches, n_columns))
            positives = np.zeros((n_batches, n_counted))
            csc_batch_moments(
                matrix.data,
                matrix.indices,
                matrix.indptr,
                batches,
                clip,
                expm1_scale,
                float32_values,
                sums,
                squares,
                positives,
            )
        else:
            n_blocks = max(1, min(numba.get_num_threads(), n_rows))
            sums, squares = np.zeros((2, n_blocks, n_batches, n_columns))
            positives = np.zeros((n_blocks, n_batches, n_counted))
            if is_csr(matrix):
                blocked_csr_batch_moments(
                    matrix.data,
                    matrix.indices,
                    matrix.indptr,
                    batches,
                    clip,
                    expm1_scale,
                    float32_values,
                    sums,
                    squares,
                    positives,
                )
            else:
                blocked_dense_batch_moments(
                    np.asarray(matrix), batches, clip, expm1_scale, float32_values, sums, squares, positives
                )
            sums, squares, positives = sums.sum(axis=0), squares.sum(axis=0), positives.sum(axis=0)
    return sums, squares, (positives if with_positives else None)


def mean_var(sums: np.ndarray, squares: np.ndarray, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance from sums, as ``scanpy.preprocessing._utils._get_mean_var``."""
    mean = sums / n_obs
    var = squares / n_obs - mean**2
    if n_obs != 1:
        var *= n_obs / (n_obs - 1)
    return mean, var


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
        ``'seurat_v3'`` or ``'seurat_v3_paper'`` (they differ with several batches only).
    span
        Loess span.
    with_batches
        Whether a batch key was given (adds ``highly_variable_nbatches``).

    Returns
    -------
    Columns ``means``, ``variances``, ``gene_name``, [``highly_variable_nbatches``],
    ``highly_variable_rank``, ``variances_norm``, ``highly_variable``, indexed by ``var_names``.
    """
    from skmisc.loess import loess

    n_cells, n_genes = matrix.shape
    n_obs_per_batch = np.bincount(batches, minlength=n_batches)
    sums, squares, _ = batch_moments(matrix, batches, n_batches)
    means, variances = mean_var(sums.sum(axis=0), squares.sum(axis=0), n_cells)

    clip = np.empty((n_batches, n_genes))
    batch_means, reg_stds = np.empty_like(clip), np.empty_like(clip)
    for b in range(n_batches):
        n_obs = int(n_obs_per_batch[b])
        mean, var = mean_var(sums[b], squares[b], n_obs)
        not_const = var > 0
        estimat_var = np.zeros(n_genes, dtype=np.float64)
        model = loess(np.log10(mean[not_const]), np.log10(var[not_const]), span=span, degree=2)
        model.fit()
        estimat_var[not_const] = model.outputs.fitted_values
        reg_stds[b] = np.sqrt(10**estimat_var)
        batch_means[b] = mean
        # clip large values as in Seurat
        clip[b] = reg_stds[b] * np.sqrt(n_obs) + mean
    clipped_sums, clipped_squares, _ = batch_moments(matrix, batches, n_batches, clip=clip)

    norm_gene_vars = np.empty((n_batches, n_genes))
    for b in range(n_batches):
        n_obs, mean = int(n_obs_per_batch[b]), batch_means[b]
        norm_gene_vars[b] = (1 / ((n_obs - 1) * np.square(reg_stds[b]))) * (
            (n_obs * np.square(mean)) + clipped_squares[b] - 2 * clipped_sums[b] * mean
        )
    return _rank_seurat_v3(means, variances, norm_gene_vars, var_names, n_top, flavor, with_batches)


def _rank_seurat_v3(
    means: np.ndarray,
    variances: np.ndarray,
    norm_gene_vars: np.ndarray,
    var_names: pd.Index,
    n_top: int,
    flavor: str,
    with_batches: bool,
) -> pd.DataFrame:
    """scanpy's ranking of the per-batch normalized variances (median rank, batch count)."""
    table = pd.DataFrame(index=var_names)
    table["means"], table["variances"] = means, variances
    # argsort twice gives ranks, small rank means most variable
    ranks = np.argsort(np.argsort(-norm_gene_vars, axis=1), axis=1).astype(np.float32)
    n_batches_high_var = np.sum((ranks < n_top).astype(int), axis=0)
    ranks[ranks >= n_top] = np.nan
    median_rank = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)

    table["gene_name"] = table.index
    table["highly_variable_nbatches"] = n_batches_high_var
    table["highly_variable_rank"] = median_rank
    table["variances_norm"] = np.mean(norm_gene_vars, axis=0)
    sort_columns = ["highly_variable_rank", "highly_variable_nbatches"]
    ascending = [True, False]
    if flavor == "seurat_v3_paper":
        sort_columns, ascending = sort_columns[::-1], ascending[::-1]
    positions = (
        table[sort_columns]
        .reset_index(drop=True)
        .sort_values(sort_columns, ascending=ascending, na_position="last")
        .index.to_numpy()
    )
    highly_variable = np.zeros(len(table), dtype=bool)
    highly_variable[positions[: int(n_top)]] = True
    table["highly_variable"] = highly_variable
    if not with_batches:
        table = table.drop(columns="highly_variable_nbatches")
    return table


def dispersion_table(
    matrix,
    batches: np.ndarray,
    n_batches: int,
    var_names: pd.Index,
    *,
    n_top: int,
    flavor: str = "seurat",
    n_bins: int = 20,
    log_base: float | None = None,
    with_batches: bool = False,
) -> pd.DataFrame:
    """The table ``scanpy.pp.highly_variable_genes(flavor=flavor, n_top_genes=n_top, inplace=False)`` returns.

    Parameters
    ----------
    matrix
        Dense array, CSR or CSC matrix of log-normalized data, cells as rows.
    batches
        Batch code per cell in ``0 .. n_batches - 1``, every code used.
    n_batches
        Number of batches, in the order scanpy visits them.
    var_names
        Gene names, the index of the table.
    n_top
        Number of highly variable genes.
    flavor
        ``'seurat'`` (dispersions of ``expm1`` of the data) or ``'cell_ranger'``.
    n_bins
        Number of mean bins for ``'seurat'``.
    log_base
        ``uns['log1p']['base']`` of the data (``None`` for the natural log).
    with_batches
        Whether a batch key was given: genes are then selected per batch among the genes
        expressed in it and ranked by the number of batches selecting them.

    Returns
    -------
    Columns ``means``, ``dispersions``, ``mean_bin``, ``dispersions_norm``,
    ``highly_variable`` without batches; with batches ``means``, ``dispersions``,
    ``dispersions_norm``, ``highly_variable``, ``highly_variable_nbatches``,
    ``highly_variable_intersection``. Indexed by ``var_names``.
    """
    expm1_scale = 0.0
    if flavor == "seurat":
        expm1_scale = 1.0 if log_base is None else float(np.log(log_base))
    sums, squares, positives = batch_moments(
        matrix, batches, n_batches, expm1_scale=expm1_scale, with_positives=with_batches
    )
    n_obs_per_batch = np.bincount(batches, minlength=n_batches)
    if not with_batches:
        mean, var = mean_var(sums[0], squares[0], int(n_obs_per_batch[0]))
        return _dispersion_batch(mean, var, var_names, flavor=flavor, n_bins=n_bins, n_top=n_top)

    tables = []
    for b in range(n_batches):
        mean, var = mean_var(sums[b], squares[b], int(n_obs_per_batch[b]))
        expressed = positives[b] > 0
        table = _dispersion_batch(
            mean[expressed], var[expressed], var_names[expressed], flavor=flavor, n_bins=n_bins, n_top=n_top
        )
        if not expressed.all():
            missing = pd.DataFrame(
                np.zeros((np.count_nonzero(~expressed), len(table.columns))), columns=table.columns
            )
            missing["highly_variable"] = missing["highly_variable"].astype(bool)
            missing.index = var_names[~expressed]
            table = pd.concat([table, missing]).loc[var_names]
        tables.append(table)
    return _merge_batches(pd.concat(tables, axis=0), var_names, n_top=n_top, n_batches=n_batches)


def _dispersion_batch(
    mean: np.ndarray, var: np.ndarray, var_names: pd.Index, *, flavor: str, n_bins: int, n_top: int
) -> pd.DataFrame:
    """scanpy's ``_highly_variable_genes_single_batch`` from the gene means and variances."""
    from scanpy.preprocessing._highly_variable_genes import _get_disp_stats, _get_mean_bins, _nth_highest

    mean = mean.copy()
    mean[mean == 0] = 1e-12  # set entries equal to zero to small value
    dispersion = var / mean
    if flavor == "seurat":  # logarithmized mean as in Seurat
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
        mean = np.log1p(mean)
    table = pd.DataFrame({"means": mean, "dispersions": dispersion})
    table["mean_bin"] = _get_mean_bins(table["means"], flavor, n_bins)
    disp_stats = _get_disp_stats(table, flavor)
    table["dispersions_norm"] = (table["dispersions"] - disp_stats["avg"]) / disp_stats["dev"]
    dispersion_norm = table["dispersions_norm"].to_numpy()
    cut_off = _nth_highest(dispersion_norm, min(n_top, len(table)))
    table["highly_variable"] = np.nan_to_num(dispersion_norm, nan=-np.inf) >= cut_off
    table.index = var_names
    return table


def _merge_batches(table: pd.DataFrame, var_names: pd.Index, *, n_top: int, n_batches: int) -> pd.DataFrame:
    """scanpy's ``_highly_variable_genes_batched`` merge of the per-batch tables."""
    table["highly_variable"] = table["highly_variable"].astype(int)
    table = table.groupby(table.index, observed=True).agg(
        {"means": "mean", "dispersions": "mean", "dispersions_norm": "mean", "highly_variable": "sum"}
    )
    table["highly_variable_nbatches"] = table["highly_variable"]
    table["highly_variable_intersection"] = table["highly_variable_nbatches"] == n_batches
    # sort genes by how often they selected as hvg within each batch and
    # break ties with normalized dispersion across batches
    table = table.sort_values(
        ["highly_variable_nbatches", "dispersions_norm"], ascending=False, na_position="last"
    )
    table["highly_variable"] = np.arange(table.shape[0]) < n_top
    return table.loc[var_names]
