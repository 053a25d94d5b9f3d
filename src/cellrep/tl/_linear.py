"""``cr.tl.linear_embedding`` and ``cr.tl.project``: a parameter-free linear representation and its reuse.

The Souza & Mehta recipe: normalize counts per cell, keep the genes that separate the
labels (ANOVA) or vary most (HVG), standardize each gene and take a (whitened) PCA. The
fitted transform lives in ``ref.uns``, so any other dataset can be mapped into the same space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import check_counts, check_gene_overlap, get_matrix, store_params
from ..pp._select import _label_codes
from ._linear_steps import (
    NORMALIZATIONS,
    as_float_matrix,
    clipped_matrix,
    column_statistics,
    gene_fractions,
    log_values,
    normalized_genes,
    reusable,
    select_gene_positions,
    standardized_product,
)

STANDARDIZE_MODES = ("query", "reference")
GENE_SELECTIONS = ("anova", "hvg")
DEFAULT_NORMALIZATION = "log"
DEFAULT_N_GENES = 2000
DEFAULT_N_COMPS = 50
DEFAULT_MAX_VALUE = None


def transform_key(key_added: str) -> str:
    """``uns`` key holding the fitted transform of the embedding ``obsm[key_added]``."""
    return "linear" if key_added == "X_linear" else key_added


def _checked_counts(adata, layer: str | None, normalization: str):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    counts = get_matrix(adata, layer)
    # ranks need no integer counts; the library-size and Pearson models do
    check_counts(
        counts,
        "the data" if layer is None else f"layer {layer!r}",
        require_integer=normalization != "rank_probit",
    )
    return as_float_matrix(counts)


def _principal_axes(
    values, means, scales, n_comps: int, max_value: float | None, random_state: int
) -> np.ndarray:
    """Genes × components loadings of the standardized (optionally clipped) ``values``.

    Without clipping the centring and scaling stay implicit. Clipped values are a dense
    cells × selected-genes block, nearly centred already, decomposed without re-centring
    so that the projection is exactly ``clip(z) @ loadings``.
    """
    from .._array._pca import pca_matrix

    if max_value is None:
        return pca_matrix(
            values, n_comps=n_comps, mean=means, scale=scales, random_state=random_state
        ).components.T
    dense = clipped_matrix(values, means, scales, max_value)
    return pca_matrix(dense, n_comps=n_comps, zero_center=False, random_state=random_state).components.T


def linear_embedding(
    ref,
    *,
    labels_key: str | None = None,
    gene_selection: str | None = None,
    normalization: str = DEFAULT_NORMALIZATION,
    n_genes: int = DEFAULT_N_GENES,
    n_comps: int = DEFAULT_N_COMPS,
    whiten: bool = True,
    max_value: float | None = DEFAULT_MAX_VALUE,
    layer: str | None = None,
    key_added: str = "X_linear",
    random_state: int = 0,
) -> None:
    """Fit a linear representation of ``ref`` and store it with its transform.

    Steps: per-cell normalization of the counts, selection of ``n_genes`` genes (ANOVA F of
    the log values across ``labels_key``, else scanpy's highly variable genes), per-gene
    standardization and a PCA with ``n_comps`` components, optionally whitened (each
    component scaled to unit variance). Sparse input stays sparse: centring and scaling
    are folded into the projection.

    Parameters
    ----------
    ref
        Reference AnnData with raw counts in ``X`` or ``layers[layer]``.
    labels_key
        ``obs`` column with cell types for ANOVA gene selection. Cells with missing labels
        and singleton classes are ignored for the selection (with a warning) but embedded.
    gene_selection
        ``'anova'`` (needs ``labels_key``) or ``'hvg'`` (scanpy's ``seurat`` dispersion on
        the log values); ``None`` means ``'anova'`` when ``labels_key`` is given.
    normalization
        ``'log'`` (log1p of counts per 10k), ``'rank_probit'`` (scTOP ranks → normal
        quantiles, unit norm per cell) or ``'pearson'`` (analytic Pearson residuals, θ=100,
        computed for the selected genes only).
    n_genes
        Genes to keep.
    n_comps
        Principal components (at most ``min(n_cells, n_genes) - 1``).
    whiten
        Scale every component to unit variance over the reference.
    max_value
        Clip standardized values to ``±max_value`` (as ``sc.pp.scale(max_value=...)``) in the
        reference and every projected query, so that a gene far outside its reference range
        (another dataset or species) cannot dominate the projection. Clipping is not
        linear: cells × selected genes are then handled as dense blocks. ``None`` keeps
        everything implicit and sparse.
    layer
        Layer with the counts instead of ``X``.
    key_added
        Embedding goes to ``obsm[key_added]``; the fitted transform (genes, means, scales,
        components, component scales, normalization parameters) to ``uns['linear']``
        (or ``uns[key_added]`` for another key), read by :func:`project`.
    random_state
        Seed of the randomized PCA.

    Examples
    --------
    >>> cr.tl.linear_embedding(ref, labels_key="cell_type")
    >>> cr.tl.project(query, ref)
    >>> query.obsm["X_linear"].shape
    """
    counts = _checked_counts(ref, layer, normalization)
    gene_selection = gene_selection or ("hvg" if labels_key is None else "anova")
    if gene_selection not in GENE_SELECTIONS:
        raise ValueError(f"gene_selection must be one of {GENE_SELECTIONS}, got {gene_selection!r}.")
    if gene_selection == "anova" and labels_key is None:
        raise ValueError("gene_selection='anova' needs labels_key; pass it or use gene_selection='hvg'.")
    codes = _label_codes(ref, labels_key) if gene_selection == "anova" else None
    log_matrix = log_values(counts)
    positions = select_gene_positions(log_matrix, codes, n_genes)
    clip = float(np.sqrt(ref.n_obs))
    fractions = gene_fractions(counts)[positions] if normalization == "pearson" else None
    # read by the statistics, every PCA pass and the scores: a lazy matrix is computed once;
    # the scores too (the whitening and the embedding read them), which frees the values after
    values = reusable(
        normalized_genes(
            counts, normalization, positions, fractions=fractions, clip=clip, log_matrix=log_matrix
        )
    )
    del log_matrix
    means, scales = column_statistics(values)
    n_comps = int(min(n_comps, positions.size, ref.n_obs - 1))
    components = _principal_axes(values, means, scales, n_comps, max_value, random_state)
    scores = reusable(standardized_product(values, means, scales, components, max_value=max_value))
    component_scales = np.asarray(scores.std(axis=0, ddof=1)) if whiten else np.ones(n_comps)
    component_scales[component_scales == 0] = 1.0
    ref.obsm[key_added] = (scores / component_scales).astype(np.float32)
    params = {
        "labels_key": labels_key,
        "gene_selection": gene_selection,
        "normalization": normalization,
        "n_genes": int(positions.size),
        "n_comps": n_comps,
        "whiten": whiten,
        "max_value": max_value,
        "layer": layer,
        "random_state": random_state,
    }
    store_params(
        ref,
        transform_key(key_added),
        params,
        genes=np.asarray(ref.var_names[positions].astype(str)),
        means=means,
        scales=scales,
        components=components,
        component_scales=component_scales,
        gene_fractions=np.zeros(0) if fractions is None else fractions,
        clip=clip,
    )


def _query_gene_index(query_genes: pd.Index, genes: np.ndarray, min_overlap: float) -> np.ndarray:
    if not query_genes.is_unique:
        raise ValueError("query.var_names are not unique; call `query.var_names_make_unique()` first.")
    check_gene_overlap(genes, query_genes, min_overlap=min_overlap)
    return query_genes.get_indexer(pd.Index(genes))


def project(
    query,
    ref,
    *,
    key: str = "X_linear",
    key_added: str | None = None,
    standardize: str = "query",
    layer: str | None = None,
    min_overlap: float = 0.5,
) -> None:
    """Map ``query`` into the linear space fitted on ``ref`` by :func:`linear_embedding`.

    Genes are matched by name, so the query may order its genes differently or have extra
    genes; reference genes missing from the query are set to the reference mean (they add
    nothing). ``project(ref, ref)`` reproduces ``ref.obsm[key]``.

    Parameters
    ----------
    query
        AnnData with raw counts (same gene identifiers and species as ``ref``; see
        :func:`map_orthologs` across species).
    ref
        AnnData on which :func:`linear_embedding` ran with ``key_added=key``.
    key
        The reference embedding to reproduce.
    key_added
        ``query.obsm`` key for the result; defaults to ``key``.
    standardize
        ``'query'`` centres and scales every gene (and fits Pearson gene fractions) on the
        query itself: per-dataset standardization, which removes dataset and species shifts
        but assumes the query holds a mix of cell types. ``'reference'`` reuses the
        reference statistics, for a query of a few cells or a single type.
    layer
        Layer with the counts instead of ``X``.
    min_overlap
        Minimal fraction of the reference genes the query must share (error below).
    """
    fitted_key = transform_key(key)
    if fitted_key not in ref.uns or "components" not in ref.uns[fitted_key]:
        raise ValueError(
            f"ref.uns[{fitted_key!r}] holds no fitted transform; run `cr.tl.linear_embedding(ref, key_added={key!r})`."
        )
    if standardize not in STANDARDIZE_MODES:
        raise ValueError(f"standardize must be one of {STANDARDIZE_MODES}, got {standardize!r}.")
    fitted = ref.uns[fitted_key]
    normalization = fitted["params"]["normalization"]
    counts = _checked_counts(query, layer, normalization)
    gene_index = _query_gene_index(query.var_names, np.asarray(fitted["genes"]), min_overlap)
    from_reference = standardize == "reference"
    values = normalized_genes(
        counts,
        normalization,
        gene_index,
        fractions=np.asarray(fitted["gene_fractions"])
        if from_reference and normalization == "pearson"
        else None,
        clip=float(fitted["clip"]) if from_reference else None,
    )
    if from_reference:
        means, scales = np.asarray(fitted["means"]), np.asarray(fitted["scales"])
    else:
        means, scales = column_statistics(values)
    max_value = fitted["params"].get("max_value")
    scores = standardized_product(
        values, means, scales, np.asarray(fitted["components"]), max_value=max_value
    )
    query.obsm[key_added or key] = (scores / np.asarray(fitted["component_scales"])).astype(np.float32)
    store_params(
        query,
        f"{transform_key(key_added or key)}_projection",
        {"key": key, "standardize": standardize, "layer": layer, "min_overlap": min_overlap},
        n_shared_genes=int((gene_index >= 0).sum()),
    )
