"""Gene vocabulary: aligning a query AnnData to the model genes, and data-derived buffers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._validation import check_counts, check_gene_overlap, get_matrix
from ._tokenize import TARGET_SUM


def check_unique_genes(var_names: pd.Index) -> None:
    if not var_names.is_unique:
        duplicated = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"Gene names must be unique (duplicated: {duplicated}); call `adata.var_names_make_unique()` first."
        )


def align_to_vocabulary(
    adata: AnnData, genes: pd.Index, *, layer: str | None, fixed_obs: dict[str, str]
) -> AnnData:
    """A new AnnData with the counts of ``adata`` on the model genes, in the model order.

    Genes the query lacks become all-zero columns, which is the same as dropping them since
    only non-zero genes are tokenized; a warning says how many. Extra query genes are ignored.
    ``fixed_obs`` sets observation columns (registered batch/labels) to a known category,
    since the encoder does not use them for inference and the query may have others.
    """
    check_unique_genes(adata.var_names)
    counts = get_matrix(adata, layer)
    check_counts(counts, "the query counts")
    shared = check_gene_overlap(genes, adata.var_names)
    if len(shared) < len(genes):
        warnings.warn(
            f"{len(genes) - len(shared)} of the {len(genes)} model genes are missing from the query and are "
            "treated as not expressed.",
            UserWarning,
            stacklevel=3,
        )
    query_index = adata.var_names.get_indexer(shared)
    model_index = genes.get_indexer(shared)
    selection = sparse.csr_matrix(
        (np.ones(len(shared), dtype=np.float32), (query_index, model_index)), shape=(adata.n_vars, len(genes))
    )
    aligned_counts = sparse.csr_matrix(sparse.csr_matrix(counts, dtype=np.float32) @ selection)
    obs = pd.DataFrame(index=adata.obs_names.copy())
    for key, category in fixed_obs.items():
        obs[key] = pd.Categorical([category] * adata.n_obs)
    aligned = AnnData(obs=obs, var=pd.DataFrame(index=genes.copy()))
    if layer is None:
        aligned.X = aligned_counts
    else:
        aligned.layers[layer] = aligned_counts
    return aligned


def mean_nonzero_log_expression(counts) -> np.ndarray:
    """Per gene, the mean of ``log1p(counts per 10k)`` over the cells expressing it (1 if none)."""
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    row_totals = np.asarray(counts.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    log_values = np.log1p(counts.data / np.maximum(row_totals[rows], 1) * TARGET_SUM)
    sums = np.bincount(counts.indices, weights=log_values, minlength=counts.shape[1])
    n_expressing = np.bincount(counts.indices[counts.data > 0], minlength=counts.shape[1])
    return np.where(n_expressing > 0, sums / np.maximum(n_expressing, 1), 1.0)


def balanced_class_weights(codes: np.ndarray, n_labels: int) -> np.ndarray:
    """``n / (n_classes * count)`` per class (sklearn's 'balanced'), 0 for absent classes."""
    counts = np.bincount(codes, minlength=n_labels).astype(np.float64)
    present = counts > 0
    return np.where(present, codes.size / (present.sum() * np.maximum(counts, 1)), 0.0)


def gene_embedding_rows(gene_embedding, genes: pd.Index, d_model: int) -> tuple[np.ndarray, np.ndarray]:
    """User gene vectors (array genes × d_model, or DataFrame indexed by gene) on the vocabulary."""
    if isinstance(gene_embedding, pd.DataFrame):
        table = gene_embedding.reindex(genes).to_numpy(dtype=np.float32)
        found = ~np.isnan(table).any(axis=1)
        if not found.any():
            raise ValueError("gene_embedding shares no gene (index) with the model genes.")
    else:
        table = np.asarray(gene_embedding, dtype=np.float32)
        if table.shape[0] != len(genes):
            raise ValueError(
                f"gene_embedding has {table.shape[0]} rows but the model has {len(genes)} genes; pass a DataFrame indexed by gene."
            )
        found = np.ones(len(genes), dtype=bool)
    if table.shape[1] != d_model:
        raise ValueError(f"gene_embedding has {table.shape[1]} columns but d_model is {d_model}.")
    return np.nan_to_num(table), found


def pca_gene_embedding(counts, d_model: int, *, random_state: int = 0) -> np.ndarray:
    """Gene vectors (genes × ``d_model``) from the PCA of the cells' standardized log expression.

    The counts are log-normalized (``cr.pp.log_normalize``, 1e4 per cell), every gene is
    standardized, and ``cr.tl.pca`` gives the loadings of up to ``d_model`` components. Each
    loading column is weighted by its component's standard deviation, so a gene's vector is
    its covariance with the main axes of variation; a fixed random orthogonal map takes fewer
    components to ``d_model`` columns. The table is scaled to a root-mean-square entry of 1,
    the scale of the random N(0, 1) initialisation it replaces. Genes never expressed get 0.
    """
    from anndata import AnnData as _AnnData

    from ..pp import log_normalize
    from ..tl import pca

    counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)  # log_normalize works in place
    n_cells, n_genes = counts.shape
    n_comps = min(d_model, n_cells - 1, n_genes - 1)
    if n_comps < 1:
        raise ValueError(
            "A PCA gene embedding needs at least 2 cells and 2 genes; pass gene_embedding='random'."
        )
    data = _AnnData(counts)
    log_normalize(data)
    pca(data, n_comps=n_comps, standardize=True, random_state=random_state)
    table = data.varm["PCs"] * np.sqrt(data.uns["pca"]["variance"])[None, :]
    if n_comps < d_model:
        rng = np.random.default_rng(random_state)
        basis, _ = np.linalg.qr(rng.standard_normal((d_model, n_comps)))
        table = table @ basis.T
    rms = np.sqrt(np.mean(table**2))
    return (table / rms if rms > 0 else table).astype(np.float32)
