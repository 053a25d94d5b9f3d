"""Gene selection: sparse ANOVA F-statistics across labels, or scanpy's highly variable genes without copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._array._anova import anova_f_statistics
from .._array._hvg import DISPERSION_FLAVORS, SEURAT_V3_FLAVORS, seurat_v3_table
from .._array._hvg_dispersion import dispersion_table
from .._validation import (
    check_counts,
    check_finite,
    check_labels,
    count_non_integer,
    get_matrix,
    raw_counts_hint,
    store_params,
)

METHODS = ("anova", "hvg")
# scanpy flavours that expect raw counts rather than log-normalized data
COUNT_FLAVORS = SEURAT_V3_FLAVORS
HVG_FLAVORS = SEURAT_V3_FLAVORS + DISPERSION_FLAVORS


def top_mask(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Boolean mask of the ``n_top`` highest scores; NaN ranks lowest, ties keep gene order."""
    ranking = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-ranking, kind="stable")
    mask = np.zeros(scores.size, dtype=bool)
    mask[order[:n_top]] = True
    return mask


def _label_codes(adata: AnnData, labels_key: str) -> np.ndarray:
    """Class code per cell, -1 for cells check_labels excludes (missing label, rare class)."""
    usable = check_labels(adata, labels_key)
    codes = np.full(adata.n_obs, -1, dtype=np.int64)
    codes[usable] = pd.Categorical(adata.obs[labels_key].astype(str).to_numpy()[usable]).codes
    return codes


def select_genes(
    adata: AnnData,
    *,
    method: str = "anova",
    labels_key: str | None = None,
    n_top: int = 2000,
    layer: str | None = None,
    flavor: str = "seurat_v3",
    batch_key: str | None = None,
    inplace: bool = True,
):
    """Select informative genes by ANOVA across labels or by scanpy's highly variable genes.

    ``method='anova'`` computes the one-way ANOVA F-statistic of every gene across the
    classes of ``obs[labels_key]``, exactly as :func:`sklearn.feature_selection.f_classif`
    on the densified matrix, but in one numba pass over the stored values (float64
    accumulation, no densification). Use it on log-normalized data. Cells with a missing
    label and classes with fewer than 2 cells are left out (with a warning). Genes that are
    constant over the used cells get F = NaN (stored as NaN, as sklearn) and rank lowest.

    ``method='hvg'`` gives the result of :func:`scanpy.pp.highly_variable_genes` with
    ``n_top_genes=n_top``, ``flavor`` and ``batch_key`` (same columns, values and selected
    genes), computed from per-batch sums read in place by numba instead of scanpy's copies
    of the data (the loess fit is scikit-misc's). ``'seurat_v3'`` (the default here) and
    ``'seurat_v3_paper'`` need raw integer counts, ``'seurat'`` and ``'cell_ranger'``
    log-normalized data (``'seurat'`` honours ``uns['log1p']['base']``).
    Float16 and bool data are read as float32, and sparse input with duplicate entries or
    unsorted indices as its canonical form (a copy; the stored matrix is not modified). A batch
    with fewer than 2 cells, or (Seurat v3 flavours) with fewer than 20 distinct means among
    its varying genes, raises a ValueError naming it before the loess runs (scikit-misc's loess
    crashes or fails there); ``'cell_ranger'`` merges equal percentile bins of small batches
    where scanpy raises pandas' "Bin edges must be unique".

    Parameters
    ----------
    adata
        Annotated data matrix.
    method
        ``'anova'`` or ``'hvg'``.
    labels_key
        Column of ``obs`` with the class labels (``'anova'`` only).
    n_top
        Number of genes to select.
    layer
        Layer to use instead of ``X``.
    flavor
        scanpy flavour for ``method='hvg'``: ``'seurat_v3'``, ``'seurat_v3_paper'``,
        ``'seurat'`` or ``'cell_ranger'``.
    batch_key
        Batch column of ``obs`` for ``method='hvg'`` (no missing values); genes are ranked
        within each batch and the rankings merged as scanpy does.
    inplace
        Write the results to ``var``; ``False`` returns them as a DataFrame instead.

    Returns
    -------
    ``None`` when ``inplace``, else a DataFrame indexed by gene. In place it sets
    ``var['anova_score']`` (anova) or scanpy's columns with ``var['highly_variable']`` (hvg),
    ``var['selected']`` (boolean, ``n_top`` genes) and ``uns['select_genes']['params']``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if n_top < 1:
        raise ValueError(f"n_top must be a positive integer, got {n_top}.")
    matrix = get_matrix(adata, layer)
    params = {"method": method, "n_top": n_top, "layer": layer}
    if method == "anova":
        check_finite(matrix)
        scores = anova_f_statistics(matrix, _label_codes(adata, labels_key))
        result = pd.DataFrame(
            {"anova_score": scores, "selected": top_mask(scores, n_top)}, index=adata.var_names
        )
        params["labels_key"] = labels_key
    else:
        if flavor not in HVG_FLAVORS:
            raise ValueError(f"flavor must be one of {HVG_FLAVORS}, got {flavor!r}.")
        batch_codes = _batch_codes(adata, batch_key)  # validated before the data are read
        if flavor in COUNT_FLAVORS:
            _check_hvg_counts(adata, matrix, layer, flavor)
        else:
            check_finite(matrix)
        result = _highly_variable(
            adata, matrix, batch_codes, n_top=n_top, flavor=flavor, with_batches=batch_key is not None
        )
        params.update(flavor=flavor, batch_key=batch_key)
    if not inplace:
        return result
    for column in result.columns:
        adata.var[column] = result[column].to_numpy()
    store_params(adata, "select_genes", params)
    return None


def _check_hvg_counts(adata: AnnData, matrix, layer: str | None, flavor: str) -> None:
    """Raw counts for the Seurat v3 flavours, with the flavour to use when the data are log-normalized."""
    scan = check_counts(matrix, require_integer=False, adata=adata if layer is None else None)
    if scan.n_non_integer and count_non_integer(matrix):
        logged = " (uns['log1p'] is set: the data are log-transformed)" if "log1p" in adata.uns else ""
        where = "adata.X" if layer is None else f"layer {layer!r}"
        raise ValueError(
            f"flavor={flavor!r} needs raw integer counts, but {where} holds non-integer values{logged}. "
            "For log-normalized data (after cr.pp.log_normalize) use flavor='seurat' (scanpy's default) "
            "or flavor='cell_ranger'; otherwise pass layer= naming the raw counts."
            + (raw_counts_hint(adata) if layer is None else "")
        )


def _batch_codes(adata: AnnData, batch_key: str | None) -> tuple[np.ndarray, int, list[str]]:
    """Batch code per cell, batches in category order (sorted values if not categorical), and their names."""
    if batch_key is None:
        return np.zeros(adata.n_obs, dtype=np.int64), 1, ["the data"]
    if batch_key not in adata.obs:
        raise ValueError(
            f"batch_key {batch_key!r} is not a column of adata.obs; pass one of {list(adata.obs.columns)}."
        )
    column = adata.obs[batch_key]
    if column.isna().any():
        raise ValueError(
            f"obs[{batch_key!r}] has {int(column.isna().sum())} missing values; fill them in "
            "(for example with an 'unknown' batch) or drop those cells first."
        )
    categories = column.array if isinstance(column.dtype, pd.CategoricalDtype) else pd.Categorical(column)
    categories = categories.remove_unused_categories()
    names = [f"batch {name!r} of obs[{batch_key!r}]" for name in categories.categories]
    return np.asarray(categories.codes, dtype=np.int64), len(categories.categories), names


def _highly_variable(
    adata: AnnData,
    matrix,
    batch_codes: tuple[np.ndarray, int, list[str]],
    *,
    n_top: int,
    flavor: str,
    with_batches: bool,
) -> pd.DataFrame:
    batches, n_batches, batch_names = batch_codes
    arguments = {"n_top": n_top, "flavor": flavor, "with_batches": with_batches, "batch_names": batch_names}
    if flavor in COUNT_FLAVORS:
        table = seurat_v3_table(matrix, batches, n_batches, adata.var_names, **arguments)
    else:
        log_base = adata.uns.get("log1p", {}).get("base")
        table = dispersion_table(matrix, batches, n_batches, adata.var_names, log_base=log_base, **arguments)
    table["selected"] = table["highly_variable"].to_numpy(dtype=bool)
    return table
