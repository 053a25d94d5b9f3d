"""Seurat and Cell Ranger highly variable genes: dispersions normalized within mean bins.

A gene's dispersion (variance / mean; for ``'seurat'`` the log dispersion of the un-logged
data against its log mean) is compared with the genes of similar mean: z-scored within
equal-width mean bins (``'seurat'``, Satija et al. 2015) or robustly within percentile bins
(``'cell_ranger'``, Zheng et al. 2017). The ``n_top`` highest normalized dispersions are
selected; with batches per batch, then by how many batches chose a gene. The values equal
:func:`scanpy.pp.highly_variable_genes` with ``n_top_genes``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._hvg import batch_moments, check_batch_sizes, mean_var


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
    batch_names: list[str] | None = None,
) -> pd.DataFrame:
    """The table ``scanpy.pp.highly_variable_genes(flavor=flavor, n_top_genes=n_top, inplace=False)`` returns.

    Parameters
    ----------
    matrix
        Dense array, CSR or CSC matrix of log-normalized data, cells as rows.
    batches
        Batch code per cell in ``0 .. n_batches - 1``, every code used.
    n_batches
        Number of batches.
    var_names
        Gene names, the index of the table.
    n_top
        Number of highly variable genes.
    flavor
        ``'seurat'`` (log dispersions of the un-logged data, ``expm1``) or ``'cell_ranger'``
        (dispersions of the data as given).
    n_bins
        Number of equal-width mean bins for ``'seurat'``.
    log_base
        ``uns['log1p']['base']`` of the data (``None`` for the natural log).
    with_batches
        Whether a batch key was given: genes are then selected per batch among the genes
        expressed in it and ranked by the number of batches selecting them.
    batch_names
        How to name each batch in error messages.

    Returns
    -------
    Columns ``means``, ``dispersions``, ``mean_bin``, ``dispersions_norm``,
    ``highly_variable`` without batches; with batches ``means``, ``dispersions``,
    ``dispersions_norm``, ``highly_variable``, ``highly_variable_nbatches``,
    ``highly_variable_intersection``. Indexed by ``var_names``.
    """
    n_cells = np.bincount(batches, minlength=n_batches)
    check_batch_sizes(n_cells, batch_names or [f"batch {batch}" for batch in range(n_batches)])
    expm1_scale = 0.0
    if flavor == "seurat":
        expm1_scale = 1.0 if log_base is None else float(np.log(log_base))
    sums, squares, n_expressing = batch_moments(
        matrix, batches, n_batches, expm1_scale=expm1_scale, with_positives=with_batches
    )
    if not with_batches:
        mean, variance = mean_var(sums[0], squares[0], int(n_cells[0]))
        return _dispersion_statistics(mean, variance, flavor=flavor, n_bins=n_bins, n_top=n_top).set_index(
            var_names
        )

    # Genes a batch never expresses are scored 0 (not selected) there, outside its bins.
    columns = ("means", "dispersions", "dispersions_norm", "highly_variable")
    per_batch = {column: np.zeros((n_batches, len(var_names))) for column in columns}
    for batch in range(n_batches):
        expressed = n_expressing[batch] > 0
        mean, variance = mean_var(sums[batch][expressed], squares[batch][expressed], int(n_cells[batch]))
        statistics = _dispersion_statistics(mean, variance, flavor=flavor, n_bins=n_bins, n_top=n_top)
        for column in columns:
            per_batch[column][batch, expressed] = statistics[column].to_numpy()
    return _combine_batch_dispersions(per_batch, var_names, n_top)


def _dispersion_statistics(
    mean: np.ndarray, variance: np.ndarray, *, flavor: str, n_bins: int, n_top: int
) -> pd.DataFrame:
    """Dispersions, their normalization within mean bins and the top ``n_top`` genes of one batch."""
    # Genes that are zero everywhere get dispersion 0 instead of 0 / 0.
    mean = np.where(mean == 0, 1e-12, mean)
    dispersion = variance / mean
    if flavor == "seurat":
        dispersion = np.log(np.where(dispersion > 0, dispersion, np.nan))
        mean = np.log1p(mean)
    mean_bin = _mean_bins(mean, flavor, n_bins)
    normalized = _normalize_within_bins(dispersion, mean_bin, flavor)
    return pd.DataFrame(
        {
            "means": mean,
            "dispersions": dispersion,
            "mean_bin": mean_bin,
            "dispersions_norm": normalized,
            "highly_variable": _top_with_ties(normalized, n_top),
        }
    )


def _mean_bins(mean: np.ndarray, flavor: str, n_bins: int) -> pd.Categorical:
    """``n_bins`` equal-width bins (``'seurat'``) or bins at every 5th percentile from the 10th.

    Equal percentiles (few genes or cells, many equal means) only bound empty bins, so they
    are dropped (``duplicates='drop'``; no gene changes bin) where scanpy raises pandas'
    "Bin edges must be unique".
    """
    if flavor == "seurat":
        return pd.cut(mean, n_bins)
    percentiles = np.percentile(mean, np.arange(10, 101, 5))
    return pd.cut(mean, np.concatenate([[-np.inf], percentiles, [np.inf]]), duplicates="drop")


def _normalize_within_bins(dispersion: np.ndarray, mean_bin: pd.Categorical, flavor: str) -> np.ndarray:
    """Dispersions as z-scores within their mean bin: mean and standard deviation for
    ``'seurat'``, median and normal-consistent median absolute deviation for ``'cell_ranger'``.
    """
    by_bin = pd.Series(dispersion).groupby(mean_bin, observed=True)
    if flavor == "seurat":
        center = by_bin.transform("mean").to_numpy()
        spread = by_bin.transform("std").to_numpy()
        # A bin with fewer than two dispersions has no standard deviation; Seurat then divides
        # by the bin mean, which scores a gene alone in its bin 1.
        alone = np.isnan(spread)
        spread[alone], center[alone] = center[alone], 0.0
    else:
        from statsmodels.robust import mad

        center = by_bin.transform("median").to_numpy()
        spread = by_bin.transform(mad).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (dispersion - center) / spread


def _top_with_ties(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Mask of the genes scoring at least the ``n_top``-th highest score (ties all kept, NaN never)."""
    scored = scores[~np.isnan(scores)]
    n_wanted = min(n_top, scores.size)
    if scored.size < n_wanted:
        warnings.warn(
            f"Only {scored.size} genes have a normalized dispersion, fewer than the {n_wanted} "
            "requested; selecting all of them. Lower n_top or check the data for constant genes.",
            UserWarning,
            stacklevel=6,
        )
    if scored.size == 0:
        return np.zeros(scores.size, dtype=bool)
    n_selected = min(n_wanted, scored.size)
    threshold = np.partition(scored, scored.size - n_selected)[scored.size - n_selected]
    return scores >= threshold


def _combine_batch_dispersions(
    per_batch: dict[str, np.ndarray], var_names: pd.Index, n_top: int
) -> pd.DataFrame:
    """Average the batches' statistics and select the genes most batches chose.

    Ties on the number of batches go to the higher mean normalized dispersion (NaN last),
    then, as in scanpy, which merges the batches by gene name, to the gene name sorted first.
    """
    n_batches = per_batch["highly_variable"].shape[0]
    n_chosen = per_batch["highly_variable"].sum(axis=0).astype(np.int64)
    table = pd.DataFrame(
        {
            column: _mean_ignoring_nan(per_batch[column])
            for column in ("means", "dispersions", "dispersions_norm")
        },
        index=var_names,
    )
    name_rank = np.empty(len(var_names), dtype=np.int64)
    name_rank[var_names.argsort()] = np.arange(len(var_names))
    order = np.lexsort((name_rank, -table["dispersions_norm"].to_numpy(), -n_chosen))
    selected = np.zeros(len(var_names), dtype=bool)
    selected[order[:n_top]] = True
    table["highly_variable"] = selected
    table["highly_variable_nbatches"] = n_chosen
    table["highly_variable_intersection"] = n_chosen == n_batches
    return table


def _mean_ignoring_nan(values: np.ndarray) -> np.ndarray:
    """Column means that skip NaN entries; NaN for a column with nothing else."""
    present = ~np.isnan(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(present, values, 0.0).sum(axis=0) / present.sum(axis=0)
