"""``cr.tl.transfer_labels``: annotate a query from a labelled reference."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from numbers import Real

import numpy as np
import pandas as pd

from .._validation import check_labels, get_matrix, store_params
from ._classifiers import EMBEDDING_METHODS, make_classifier
from ._gene_overlap import shared_genes
from ._linear import linear_embedding, project, transform_key
from ._novelty import (
    MIN_QUERY_CELLS_TO_SCALE,
    MIN_REFERENCE_CELLS_TO_SPLIT,
    calibration_split,
    certainty,
    held_out_pvalues,
    reference_pvalues,
)

METHODS = (*EMBEDDING_METHODS, "sctop")
UNKNOWN = "unknown"
# The settings that won the benchmark overall (mean macro-F1 over the within-dataset splits
# and both cross-species directions, see benchmarks/run_accuracy.py): log counts, HVG genes,
# reference standardization clipped at ±4 (robust to genes far outside their reference
# range), no whitening, and a strongly regularized logistic regression (C=0.05), which
# transfers across species far better than C=1 at no cost within a dataset.
DEFAULT_LINEAR_KWARGS = {"normalization": "log", "gene_selection": "hvg", "whiten": False, "max_value": 4.0}
DEFAULT_STANDARDIZE = "reference"
DEFAULT_C = 0.05
# Certainty below which a cell is called "unknown", chosen by leave-one-dataset-out on the
# novel-type task (benchmarks/novelty_threshold.py, docs/benchmarks.md): each type held out
# of the reference in turn, within eight datasets and across datasets and species; the
# threshold with the best macro-F1 (the novel cells' label being "unknown") on the other
# dataset groups is 0.3 for every held-out group.
DEFAULT_UNKNOWN_THRESHOLD = 0.3
LABEL_WARNINGS = r".*(have a missing|Classes with fewer than)"


def _on_genes(adata, genes: np.ndarray, layer, obs_columns=()):
    """A light AnnData of ``adata``'s counts (``X`` or ``layer``) on ``genes``, in that order."""
    import anndata as ad

    matrix = get_matrix(adata, layer)
    if adata.n_vars != genes.size or not (adata.var_names == genes).all():
        matrix = matrix[:, adata.var_names.get_indexer(genes)]
    return ad.AnnData(matrix, obs=adata.obs[list(obs_columns)].copy(), var=pd.DataFrame(index=genes))


def _shared_gene_embeddings(
    ref, query, labels_key: str, genes: np.ndarray, standardize: str, layer, linear_kwargs
):
    """Fit ``linear_embedding`` on the reference restricted to ``genes`` and project the query on them.

    Both datasets are normalized over the same genes, so a query on a smaller panel is compared
    with the reference on equal terms. The results are written to ``ref`` and ``query`` as if
    the two had been called directly.
    """
    light_ref, light_query = _on_genes(ref, genes, layer, [labels_key]), _on_genes(query, genes, layer)
    with warnings.catch_warnings():
        # transfer_labels already warned about the labels it ignores
        warnings.filterwarnings("ignore", message=LABEL_WARNINGS, category=UserWarning)
        linear_embedding(light_ref, labels_key=labels_key, key_added="X_linear", **linear_kwargs)
    project(light_query, light_ref, key="X_linear", standardize=standardize)
    ref.obsm["X_linear"], ref.uns["linear"] = light_ref.obsm["X_linear"], light_ref.uns["linear"]
    ref.uns["linear"]["params"]["layer"] = layer
    query.obsm["X_linear"] = light_query.obsm["X_linear"]
    query.uns["linear_projection"] = light_query.uns["linear_projection"]
    query.uns["linear_projection"]["params"]["layer"] = layer
    return np.asarray(ref.obsm["X_linear"]), np.asarray(query.obsm["X_linear"])


def _embeddings(ref, query, use_rep: str, standardize: str, layer):
    """Reference and query coordinates in the existing representation ``use_rep``."""
    if use_rep not in ref.obsm:
        raise ValueError(f"ref.obsm has no {use_rep!r}; compute it first or pass use_rep=None.")
    if use_rep not in query.obsm:
        if transform_key(use_rep) not in ref.uns:
            raise ValueError(
                f"query.obsm has no {use_rep!r}, and ref holds no linear transform to project the query."
            )
        project(query, ref, key=use_rep, standardize=standardize, layer=layer)
    reference, target = np.asarray(ref.obsm[use_rep]), np.asarray(query.obsm[use_rep])
    if reference.shape[1] != target.shape[1]:
        raise ValueError(
            f"obsm[{use_rep!r}] has {reference.shape[1]} columns in ref but {target.shape[1]} in query."
        )
    return reference, target


def novelty_pvalues(
    ref, query, reference, target, *, labels_key: str, random_state: int, recipe=None, labelled=None
):
    """Reference p-values of the query cells (``cellrep.tl._novelty``), by the rule for the query's size.

    Parameters
    ----------
    ref, query
        The reference the classifier was trained on, and the query (AnnData).
    reference, target
        Their coordinates in the shared embedding (cells × components).
    labels_key
        ``ref.obs`` column with the labels (the calibration split halves each type).
    random_state
        Seed of the split (and of the reference sample beyond ``MAX_REFERENCE_CELLS``).
    recipe
        ``(genes, standardize, layer, linear_kwargs)`` with which :func:`linear_embedding` made
        the embedding (on ``ref``'s ``genes``) and :func:`project` mapped the query; ``None`` when
        the embedding cannot be refitted (an existing ``use_rep``).
    labelled
        Boolean mask of the ``ref`` cells the classifier was trained on (default: all); only
        they calibrate.

    A query of fewer than ``MIN_QUERY_CELLS_TO_SCALE`` cells with a ``recipe`` (and a reference
    of at least ``MIN_REFERENCE_CELLS_TO_SPLIT`` cells) is calibrated out of sample: the
    embedding is fitted again on half of the reference, each type halved, and the other half and
    the query are projected as the query was (:func:`held_out_pvalues`). That costs one more
    embedding fit on at most ``MAX_REFERENCE_CELLS / 2`` cells, so larger queries keep
    :func:`reference_pvalues`, whose median scaling makes the in-sample bias harmless.
    """
    labelled = np.ones(ref.n_obs, dtype=bool) if labelled is None else np.asarray(labelled, dtype=bool)
    small = query.n_obs < MIN_QUERY_CELLS_TO_SCALE and labelled.sum() >= MIN_REFERENCE_CELLS_TO_SPLIT
    if recipe is None or not small:
        return reference_pvalues(reference[labelled], target, random_state=random_state)
    genes, standardize, layer, linear_kwargs = recipe
    rows = np.flatnonzero(labelled)
    # cells taken in name order: the split and the refit do not depend on the order of ref's cells
    rows = rows[np.argsort(np.asarray(ref.obs_names[rows]), kind="stable")]
    fit_rows, held_out_rows = calibration_split(
        ref.obs[labels_key].astype(str).to_numpy()[rows], random_state=random_state
    )
    light_ref = _on_genes(ref, genes, layer, [labels_key])
    fit_part, held_out = light_ref[rows[fit_rows]].copy(), light_ref[rows[held_out_rows]].copy()
    light_query = _on_genes(query, genes, layer)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=LABEL_WARNINGS, category=UserWarning)
        linear_embedding(fit_part, labels_key=labels_key, key_added="X_linear", **linear_kwargs)
    for part in (held_out, light_query):
        project(part, fit_part, key="X_linear", standardize=standardize)
    return held_out_pvalues(
        fit_part.obsm["X_linear"], held_out.obsm["X_linear"], light_query.obsm["X_linear"]
    )


@contextmanager
def _undone_on_error(*adatas):
    """Restore the ``obsm`` and ``uns`` entries of ``adatas`` if the block raises.

    The embedding is written to ``ref`` before the query is projected, so a query that
    fails (no shared genes, bad counts) would otherwise leave ``ref`` changed.
    """
    saved = [(dict(adata.obsm), dict(adata.uns)) for adata in adatas]
    try:
        yield
    except Exception:
        for adata, (obsm, uns) in zip(adatas, saved, strict=True):
            for mapping, previous in ((adata.obsm, obsm), (adata.uns, uns)):
                for key in set(mapping.keys()) - set(previous):
                    del mapping[key]
                for key, value in previous.items():
                    if mapping.get(key) is not value:
                        mapping[key] = value
        raise


def _sctop_probabilities(ref, query, labels_key: str):
    """scTOP scores of the query cells on the reference type basis, clipped at 0 and normalized per cell."""
    from ._sctop import sctop_basis, sctop_score

    basis = sctop_basis(ref, labels_key=labels_key, inplace=False)
    scores = np.asarray(sctop_score(query, basis, inplace=False), dtype=np.float64)
    classes = np.asarray(basis.columns.astype(str))
    positive = np.clip(scores, 0, None)
    totals = positive.sum(axis=1, keepdims=True)
    proba = np.divide(positive, totals, out=np.full_like(positive, 1.0 / classes.size), where=totals > 0)
    return classes, proba


def transfer_labels(
    ref,
    query,
    *,
    labels_key: str,
    method: str = "logreg",
    use_rep: str | None = None,
    key_added: str | None = None,
    class_weight: str | None = "balanced",
    unknown_threshold: float | None = None,
    C: float = DEFAULT_C,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    min_cluster_size: int = 30,
    standardize: str = DEFAULT_STANDARDIZE,
    layer: str | None = None,
    linear_kwargs: dict | None = None,
    random_state: int = 0,
) -> None:
    """Predict ``ref.obs[labels_key]`` for every cell of ``query``.

    A classifier is trained on the reference cells in a shared representation and applied
    to the query. With ``use_rep=None`` that representation is :func:`linear_embedding`
    fitted on ``ref`` (written to ``ref.obsm['X_linear']``) and the query is mapped with
    :func:`project` (``query.obsm['X_linear']``).

    **Genes.** With ``use_rep=None`` (and for ``method='sctop'``) both datasets are known, so
    everything is computed on the genes they share: both are normalized over them and the
    features (HVG / ANOVA) are chosen among them. A query measured on a small gene panel
    therefore works with the defaults. One rule holds for every method (and the
    ``cellrep benchmark`` cross tasks): fewer than 20 shared genes raise a ValueError; fewer
    than 200, or fewer than half of the smaller panel, warn with the figures (on PBMC68k,
    macro-F1 falls from 0.58 with 200 random shared genes to 0.46 with 80). :func:`project` alone, used after :func:`linear_embedding`, does
    not know the query at fit time: it uses the genes chosen on the whole reference and
    refuses a query holding fewer than ``min_overlap`` (half) of them.

    Parameters
    ----------
    ref
        Labelled reference AnnData (raw counts when ``use_rep`` is None or ``method='sctop'``).
    query
        AnnData to annotate.
    labels_key
        ``ref.obs`` column with the labels. Cells with a missing label and classes with a
        single cell are left out of training, with a warning.
    method
        ``'logreg'`` (logistic regression), ``'knn'`` (distance-weighted k nearest
        neighbours), ``'centroid'`` (nearest class centroid), ``'local_logreg'`` (Leiden
        clusters of the reference, one logistic regression per cluster, query cells assigned
        by kNN, the global model where a cluster has none) or ``'sctop'`` (scTOP scores on
        the counts, ``use_rep`` ignored; the "probabilities" are the positive scores
        normalized per cell).
    use_rep
        ``obsm`` key of an existing shared representation. If the query lacks it but the
        reference holds its fitted linear transform, the query is projected first.
    key_added
        Prefix of the outputs; defaults to ``labels_key``.
    class_weight
        Class weighting of the logistic regressions (``'balanced'`` or ``None``).
    unknown_threshold
        Cells whose certainty is below it are called ``'unknown'`` (candidate types absent
        from the reference); 0 never calls unknown. ``None`` (default): 0.3 for
        ``method='logreg'``, the classifier it was chosen for, and 0 for the other methods, whose
        probabilities are on other scales. The certainty is the top probability × p^0.25,
        where p (``obs[f'{key}_reference_pvalue']``, embedding methods only) is the conformal
        p-value of the cell's mean distance to its 10 nearest reference cells in the shared
        embedding. For a query of at least 100 cells, both sides' distances are taken relative
        to their own median so that a query shifted as a whole (another lab, another species)
        is not novel; p then also depends on the rest of the query, and a query made only of
        novel cells looks typical. A smaller query (with ``use_rep=None`` and at least 40
        labelled reference cells) is calibrated out of sample: the embedding is fitted again on
        half of the reference (each type halved), and the query is compared with the other
        half projected like it (split conformal), which costs one more embedding fit; from 20
        cells on, a query farther than the held-out half as a whole is shrunk back to its scale.
        With ``use_rep`` given, a small query is compared with the reference's in-sample
        distances, which are too large: its p-values are then biased towards 1. For ``method='sctop'`` the certainty is the top score.
        The default 0.3 was chosen by leave-one-dataset-out on the benchmark's novel-type task
        (each type held out of the reference in turn; eight datasets plus the cross-dataset
        and cross-species pairs): on held-out groups it called 19 % of the novel cells and 2 %
        of the known cells (3–5 % across species) unknown. It is a lead, not a census: a novel
        type is missed when, projected on the reference's components, it lands among a
        reference type (PBMC3k: 2 % of the held-out types' cells called unknown, see
        docs/benchmarks.md); the call is most reliable for types far from every reference type.
    C
        Inverse L2 regularization strength of the logistic regressions (``'logreg'``,
        ``'local_logreg'``). The default 0.05 won the benchmark: strong regularization keeps
        the model on the broad features that survive a change of dataset or species.
    n_neighbors
        Neighbours for ``'knn'`` and ``'local_logreg'``.
    resolution, min_cluster_size
        Leiden resolution and smallest cluster with its own model (``'local_logreg'``).
    standardize
        Passed to :func:`project`: ``'reference'`` (default; with the clipping of the default
        embedding this is the most robust across datasets and species) or ``'query'``
        (per-dataset standardization, which needs a query with a mix of cell types).
    layer
        Layer with the counts instead of ``X``.
    linear_kwargs
        Arguments of :func:`linear_embedding` when ``use_rep`` is None. The defaults won the
        benchmark: ``normalization='log'``, ``gene_selection='hvg'``, ``whiten=False``,
        ``max_value=4`` (plus ``n_genes=2000``, ``n_comps=50``); entries given here override them.
    random_state
        Seed for the PCA, the classifiers and Leiden.

    Returns
    -------
    ``None``. Writes to ``query`` ``obs[f'{key}_pred']`` (categorical, with an ``'unknown'`` category
    when ``unknown_threshold`` > 0), ``obs[f'{key}_confidence']`` (top probability),
    ``obs[f'{key}_reference_pvalue']`` (embedding methods), ``obs[f'{key}_certainty']``,
    ``obsm[f'{key}_proba']`` (cells × classes) and ``uns[f'{key}_transfer']`` with the
    class names (``'classes'``, the column order of the probabilities), ``'params'`` and, when
    the genes were chosen here, ``'shared_genes'`` (genes in both datasets) and ``'genes'``
    (the features the classifier saw: the selected genes, or every shared gene for scTOP).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if unknown_threshold is None:
        # chosen for the default classifier only: other methods' probabilities are on other scales
        unknown_threshold = DEFAULT_UNKNOWN_THRESHOLD if method == "logreg" else 0.0
    if (
        isinstance(unknown_threshold, bool)
        or not isinstance(unknown_threshold, Real)
        or not 0 <= unknown_threshold <= 1
    ):
        raise ValueError(
            f"unknown_threshold must be a number within [0, 1] or None, got {unknown_threshold!r}."
        )
    if query.n_obs == 0:
        raise ValueError("The query has no cells (query.n_obs == 0): there is nothing to label.")
    usable = check_labels(ref, labels_key)
    labels = ref.obs[labels_key].astype(str).to_numpy()[usable]
    if unknown_threshold > 0 and UNKNOWN in labels:
        raise ValueError(
            f"ref.obs[{labels_key!r}] has a class named {UNKNOWN!r}, the label of the unknown call: "
            "rename it or pass unknown_threshold=0."
        )
    genes, pvalues = None, None
    if method == "sctop":
        genes = shared_genes(ref.var_names, query.var_names)
        training = _on_genes(ref[usable] if not usable.all() else ref, genes, layer, [labels_key])
        classes, proba = _sctop_probabilities(training, _on_genes(query, genes, layer), labels_key)
    else:
        linear_kwargs = {**DEFAULT_LINEAR_KWARGS, **(linear_kwargs or {})}
        with _undone_on_error(ref, query):
            if use_rep is None:
                genes = shared_genes(ref.var_names, query.var_names)
                reference, target = _shared_gene_embeddings(
                    ref, query, labels_key, genes, standardize, layer, linear_kwargs
                )
            else:
                reference, target = _embeddings(ref, query, use_rep, standardize, layer)
            classifier = make_classifier(
                method,
                class_weight=class_weight,
                C=C,
                n_neighbors=int(min(n_neighbors, usable.sum())),
                resolution=resolution,
                min_cluster_size=min_cluster_size,
                random_state=random_state,
            ).fit(reference[usable], labels)
            classes, proba = np.asarray(classifier.classes_).astype(str), classifier.predict_proba(target)
            pvalues = novelty_pvalues(
                ref,
                query,
                reference,
                target,
                labels_key=labels_key,
                random_state=random_state,
                recipe=None if use_rep is not None else (genes, standardize, layer, linear_kwargs),
                labelled=usable,
            )
    _write_predictions(query, key_added or labels_key, classes, proba, unknown_threshold, pvalues)
    params = {
        "labels_key": labels_key,
        "method": method,
        "use_rep": use_rep,
        "class_weight": class_weight,
        "unknown_threshold": unknown_threshold,
        "C": C,
        "n_neighbors": n_neighbors,
        "standardize": standardize,
        "layer": layer,
        "linear_kwargs": dict(linear_kwargs or {}) if use_rep is None and method != "sctop" else {},
    }
    used = {}
    if genes is not None:
        # the genes the classifier saw: the selected features, or every shared gene for scTOP
        features = genes if method == "sctop" else np.asarray(ref.uns["linear"]["genes"])
        used = {"shared_genes": np.asarray(genes, dtype=object), "genes": np.asarray(features, dtype=object)}
    store_params(query, f"{key_added or labels_key}_transfer", params, classes=classes, **used)


def _write_predictions(
    query,
    key: str,
    classes: np.ndarray,
    proba: np.ndarray,
    unknown_threshold: float,
    pvalues: np.ndarray | None,
) -> None:
    confidence = proba.max(axis=1)
    score = confidence if pvalues is None else certainty(confidence, pvalues)
    predicted = classes[np.argmax(proba, axis=1)].astype(object)
    categories = list(classes)
    if unknown_threshold > 0:
        predicted[score < unknown_threshold] = UNKNOWN
        categories.append(UNKNOWN)
    query.obs[f"{key}_pred"] = pd.Categorical(predicted, categories=categories)
    query.obs[f"{key}_confidence"] = confidence
    if pvalues is not None:
        query.obs[f"{key}_reference_pvalue"] = pvalues
    query.obs[f"{key}_certainty"] = score
    query.obsm[f"{key}_proba"] = proba.astype(np.float32)
