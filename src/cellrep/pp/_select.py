"""Gene selection: sparse ANOVA F-statistics across labels, or scanpy's highly variable genes."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._array._anova import anova_f_statistics
from .._validation import (
    check_counts,
    check_finite,
    check_labels,
    check_matrix_type,
    get_matrix,
    store_params,
)

METHODS = ("anova", "hvg")
# scanpy flavours that expect raw counts rather than log-normalized data
COUNT_FLAVORS = ("seurat_v3", "seurat_v3_paper")


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

    ``method='hvg'`` delegates to :func:`scanpy.pp.highly_variable_genes` with
    ``n_top_genes=n_top`` and ``flavor``; ``'seurat_v3'`` (the default here) needs raw
    integer counts, the other flavours log-normalized data.

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
        scanpy flavour for ``method='hvg'``.
    batch_key
        Batch column for ``method='hvg'``, passed to scanpy.
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
    check_matrix_type(matrix)
    params = {"method": method, "n_top": n_top, "layer": layer}
    if method == "anova":
        check_finite(matrix)
        scores = anova_f_statistics(matrix, _label_codes(adata, labels_key))
        result = pd.DataFrame(
            {"anova_score": scores, "selected": top_mask(scores, n_top)}, index=adata.var_names
        )
        params["labels_key"] = labels_key
    else:
        check = partial(check_counts, require_integer=True) if flavor in COUNT_FLAVORS else check_finite
        check(matrix)
        result = _highly_variable(adata, n_top=n_top, layer=layer, flavor=flavor, batch_key=batch_key)
        params.update(flavor=flavor, batch_key=batch_key)
    if not inplace:
        return result
    for column in result.columns:
        adata.var[column] = result[column].to_numpy()
    store_params(adata, "select_genes", params)
    return None


def _highly_variable(adata: AnnData, *, n_top: int, layer: str | None, **kwargs) -> pd.DataFrame:
    import scanpy as sc

    matrix = get_matrix(adata, layer)
    if sparse.issparse(matrix) and not isinstance(matrix, sparse.spmatrix):
        # scanpy 1.11's seurat_v3 path does not take scipy sparse *arrays*; wrap the same buffers
        matrix = sparse.csr_matrix(matrix) if matrix.format == "csr" else sparse.csc_matrix(matrix)
    shallow = AnnData(matrix, obs=adata.obs, var=pd.DataFrame(index=adata.var_names))
    # counts were validated already
    table = sc.pp.highly_variable_genes(
        shallow, n_top_genes=n_top, inplace=False, check_values=False, **kwargs
    )
    table.index = adata.var_names
    table["selected"] = table["highly_variable"].to_numpy(dtype=bool)
    return table
