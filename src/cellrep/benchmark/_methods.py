"""Benchmark methods: every cellrep linear variant and the peers a user would otherwise pick.

A :class:`Method` has a ``fit(train, labels_key, seed)`` step that sees only the training
cells (gene selection, scaling, PCA and classifier all fitted there) and a
``predict(model, test)`` step that returns one label per test cell, or a pair
``(labels, confidence)`` (used by the novel-type task).

The default set is the comparison a user needs: cellrep's default, the Souza–Mehta recipe and
the peers (scanpy's standard pipeline, CellTypist, SingleR, scTOP). The other cellrep variants,
scVI, scANVI and the encoder run on request (``methods=['all']`` runs everything but the
slow learned models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..tl._classifiers import EMBEDDING_METHODS, WHITENED_METHODS
from ..tl._linear_steps import NORMALIZATIONS
from ..tl._transfer import DEFAULT_C, DEFAULT_LINEAR_KWARGS, DEFAULT_STANDARDIZE, DEFAULT_UNKNOWN_THRESHOLD

SCANPY_N_TOP_GENES = 2000
SCANPY_N_COMPS = 50
SCVI_MAX_EPOCHS = 20


@dataclass(frozen=True)
class Method:
    """A label-transfer method under benchmark."""

    name: str
    fit: Callable[[Any, str, int], Any]
    predict: Callable[[Any, Any], np.ndarray]
    default: bool = True
    description: str = ""
    options: dict = field(default_factory=dict)
    #: "cellrep" (the default and the Souza–Mehta recipe), "variant" (other cellrep settings) or "peer"
    family: str = "cellrep"
    #: confidence below which the method calls a cell "unknown" (None: it makes no such call)
    unknown_threshold: float | None = None
    #: minutes-long learned models (scVI, scANVI, the encoder) stay out of ``'all'``
    slow: bool = False


def _labels(adata, labels_key: str) -> np.ndarray:
    return adata.obs[labels_key].astype(str).to_numpy()


def cellrep_method(
    normalization: str = "log",
    classifier: str = "logreg",
    *,
    name: str | None = None,
    standardize: str = "query",
    default: bool = False,
    family: str = "variant",
    unknown_threshold: float | None = None,
    novelty: bool = False,
    **options,
) -> Method:
    """A cellrep linear variant: ``linear_embedding`` + ``project`` + an sklearn classifier.

    ``options`` go to :func:`cellrep.tl.linear_embedding` (``n_genes``, ``n_comps``,
    ``whiten``) or to the classifier (``C``, ``class_weight``, ``n_neighbors``, ...). With
    ``novelty`` the confidence is ``transfer_labels``' certainty (top probability ×
    reference p-value^0.25) instead of the top probability.
    """
    from ..tl._classifiers import make_classifier

    options.setdefault("whiten", classifier in WHITENED_METHODS)
    embedding_keys = {"n_genes", "n_comps", "whiten", "gene_selection", "max_value"}
    embedding_options = {key: value for key, value in options.items() if key in embedding_keys}
    classifier_options = {key: value for key, value in options.items() if key not in embedding_keys}

    def fit(train, labels_key: str, seed: int):
        from ..tl import linear_embedding

        linear_embedding(
            train, labels_key=labels_key, normalization=normalization, random_state=seed, **embedding_options
        )
        model = make_classifier(classifier, random_state=seed, **classifier_options)
        return train, model.fit(train.obsm["X_linear"], _labels(train, labels_key)), labels_key, seed

    def predict(fitted, test) -> np.ndarray:
        from ..tl import project

        train, model, labels_key, seed = fitted
        project(test, train, standardize=standardize)
        coordinates = test.obsm["X_linear"]
        if not hasattr(model, "predict_proba"):
            return np.asarray(model.predict(coordinates)).astype(str)
        proba = model.predict_proba(coordinates)
        confidence = proba.max(axis=1)
        if novelty:
            from ..tl._novelty import certainty
            from ..tl._transfer import novelty_pvalues

            # the embedding recipe of fit, refitted on half of train for a small test set
            linear_kwargs = {"normalization": normalization, "random_state": seed, **embedding_options}
            pvalues = novelty_pvalues(
                train,
                test,
                train.obsm["X_linear"],
                coordinates,
                labels_key=labels_key,
                random_state=getattr(model, "random_state", 0),
                recipe=(np.asarray(train.var_names), standardize, None, linear_kwargs),
            )
            confidence = certainty(confidence, pvalues)
        return np.asarray(model.classes_)[proba.argmax(axis=1)].astype(str), confidence

    return Method(
        name or f"cellrep_{normalization}_{classifier}",
        fit,
        predict,
        default=default,
        family=family,
        unknown_threshold=unknown_threshold,
        description=f"cellrep {normalization} normalization, linear embedding, {classifier}",
        options={
            "normalization": normalization,
            "classifier": classifier,
            "standardize": standardize,
            **options,
        },
    )


def _fit_cellrep_sctop(train, labels_key: str, seed: int):
    """cellrep's scTOP basis of the training types (what ``transfer_labels(method='sctop')`` builds)."""
    from ..tl import sctop_basis

    return sctop_basis(train, labels_key=labels_key, inplace=False)


def _predict_cellrep_sctop(basis, test) -> np.ndarray:
    from ..tl import sctop_score

    scores = sctop_score(test, basis, inplace=False)
    return scores.idxmax(axis=1).astype(str).to_numpy(), scores.max(axis=1).to_numpy()


def _log_cp10k(adata) -> None:
    import scanpy as sc

    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)


def _fit_scanpy(train, labels_key: str, seed: int):
    """scanpy's standard pipeline: normalize_total 1e4, log1p, HVG 2000, scale, PCA 50, logistic regression."""
    import scanpy as sc
    from sklearn.linear_model import LogisticRegression

    train = train.copy()
    _log_cp10k(train)
    sc.pp.highly_variable_genes(train, n_top_genes=min(SCANPY_N_TOP_GENES, train.n_vars))
    train = train[:, train.var["highly_variable"].to_numpy()].copy()
    sc.pp.scale(train, max_value=10)
    sc.pp.pca(train, n_comps=min(SCANPY_N_COMPS, train.n_obs - 1, train.n_vars - 1), random_state=seed)
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(
        train.obsm["X_pca"], _labels(train, labels_key)
    )
    return (
        train.var_names,
        train.var["mean"].to_numpy(),
        train.var["std"].to_numpy(),
        train.varm["PCs"],
        model,
    )


def _predict_scanpy(fitted, test) -> np.ndarray:
    """Apply the training normalization, scaling (with the training mean/std, clipped at 10) and PCs."""
    genes, mean, std, loadings, model = fitted
    test = test.copy()
    _log_cp10k(test)
    values = test[:, genes].X
    values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    scaled = np.clip((values - mean) / np.where(std > 0, std, 1.0), None, 10)
    proba = model.predict_proba(scaled @ loadings)
    return np.asarray(model.classes_)[proba.argmax(axis=1)].astype(str), proba.max(axis=1)


def _genes_by_cells(adata):
    import pandas as pd

    values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return pd.DataFrame(values.T, index=adata.var_names, columns=adata.obs_names)


def _fit_sctop(train, labels_key: str, seed: int):
    """The ``sctop`` package: per-type averaged ``process``ed profiles as the basis."""
    import pandas as pd
    import sctop

    labels = _labels(train, labels_key)
    types = np.unique(labels)
    profiles = [
        sctop.process(_genes_by_cells(train[labels == cell_type]), average=True) for cell_type in types
    ]
    basis = pd.concat(profiles, axis=1)
    basis.columns = types
    return basis


def _predict_sctop(basis, test) -> np.ndarray:
    import sctop

    scores = sctop.score(basis, sctop.process(_genes_by_cells(test)))
    return scores.idxmax(axis=0).astype(str).to_numpy(), scores.max(axis=0).to_numpy()


def _latent_logreg_fit(train, labels_key: str, seed: int, latent: Callable):
    from sklearn.linear_model import LogisticRegression

    encoder, train_latent = latent(train, seed)
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(train_latent, _labels(train, labels_key))
    return encoder, model


def _scvi_latent(train, seed: int):
    import scvi

    scvi.settings.seed = seed
    train = train.copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train)
    model.train(max_epochs=SCVI_MAX_EPOCHS, enable_progress_bar=False, accelerator="cpu")
    return model, model.get_latent_representation()


def _latent_logreg_predict(fitted, test) -> np.ndarray:
    encoder, model = fitted
    # the model registers the query with its own setup (same genes as the training cells)
    return np.asarray(model.predict(encoder.get_latent_representation(test))).astype(str)


def _latent_method(name: str, latent: Callable, description: str) -> Method:
    """An optional (slow) method: a learned latent space plus logistic regression."""
    return Method(
        name,
        lambda train, labels_key, seed: _latent_logreg_fit(train, labels_key, seed, latent),
        _latent_logreg_predict,
        default=False,
        description=f"{description} + LogisticRegression",
        family="peer",
        slow=True,
    )


def _peer_methods() -> list[Method]:
    from . import _peers

    return [
        Method(
            "celltypist",
            _peers.fit_celltypist,
            _peers.predict_celltypist,
            family="peer",
            unknown_threshold=_peers.CELLTYPIST_UNASSIGNED,
            description="CellTypist trained on the reference (log1p CP10k, SGD, feature selection), best match",
        ),
        Method(
            "celltypist_majority",
            _peers.fit_celltypist,
            _peers.predict_celltypist_majority,
            default=False,
            family="peer",
            unknown_threshold=_peers.CELLTYPIST_UNASSIGNED,
            description="CellTypist as above, with majority voting over its over-clustering of the query",
        ),
        Method(
            "singler",
            _peers.fit_singler,
            _peers.predict_singler,
            family="peer",
            description="SingleR (singler package) with the reference as its reference (log1p CP10k)",
        ),
        Method(
            "scanvi",
            _peers.fit_scanvi,
            _peers.predict_scanvi,
            default=False,
            family="peer",
            slow=True,
            unknown_threshold=_peers.SCANVI_UNKNOWN,
            description=(
                f"scVI ({_peers.SCANVI_REFERENCE_EPOCHS} epochs) → scANVI ({_peers.SCANVI_EPOCHS}), "
                f"scArches query mapping ({_peers.SCANVI_QUERY_EPOCHS} epochs)"
            ),
        ),
    ]


def _builtin_methods() -> dict[str, Method]:
    methods = {
        method.name: method
        for normalization in NORMALIZATIONS
        for classifier in EMBEDDING_METHODS
        for method in [cellrep_method(normalization, classifier)]
    }
    defaults = {key: value for key, value in DEFAULT_LINEAR_KWARGS.items() if key != "normalization"}
    # exactly what `cr.tl.transfer_labels` does with its default arguments
    methods["cellrep_default"] = cellrep_method(
        DEFAULT_LINEAR_KWARGS["normalization"],
        "logreg",
        name="cellrep_default",
        standardize=DEFAULT_STANDARDIZE,
        default=True,
        family="cellrep",
        unknown_threshold=DEFAULT_UNKNOWN_THRESHOLD,
        novelty=True,
        C=DEFAULT_C,
        **defaults,
    )
    # Souza & Mehta: scTOP processing, ANOVA genes, per-dataset standardization, whitened PCA,
    # balanced logistic regression (C=1)
    methods["souza_mehta"] = cellrep_method(
        "rank_probit", "logreg", name="souza_mehta", default=True, family="cellrep"
    )
    peers = [
        Method(
            "cellrep_sctop",
            _fit_cellrep_sctop,
            _predict_cellrep_sctop,
            default=False,
            family="variant",
            description="cellrep scTOP scores (cr.tl.sctop_*)",
        ),
        Method(
            "scanpy",
            _fit_scanpy,
            _predict_scanpy,
            family="peer",
            description="scanpy standard pipeline + LogisticRegression",
        ),
        Method(
            "sctop",
            _fit_sctop,
            _predict_sctop,
            family="peer",
            description="the sctop package (process/score, argmax)",
        ),
        *_peer_methods(),
        _latent_method("scvi", _scvi_latent, f"scVI latent ({SCVI_MAX_EPOCHS} epochs)"),
    ]
    from ._encoder_methods import encoder_methods

    # learned models: peers of the linear methods, minutes long, run only when named
    peers.extend(replace(method, family="peer", slow=True) for method in encoder_methods())
    methods.update({method.name: method for method in peers})
    return methods


METHODS: dict[str, Method] = _builtin_methods()
DEFAULT_METHODS = tuple(name for name, method in METHODS.items() if method.default)
#: every method but the slow learned models (``--methods all``)
ALL_METHODS = tuple(name for name, method in METHODS.items() if not method.slow)


def resolve_methods(methods) -> list[Method]:
    """Method objects for names (or Method objects); ``None`` gives the defaults, ``'all'`` every fast one."""
    if methods is None:
        methods = DEFAULT_METHODS
    resolved, seen = [], set()
    expanded = []
    for method in methods:
        expanded.extend(ALL_METHODS if isinstance(method, str) and method == "all" else [method])
    for method in expanded:
        if isinstance(method, str):
            if method in seen:
                continue
            seen.add(method)
        if isinstance(method, Method):
            resolved.append(method)
        elif method in METHODS:
            resolved.append(METHODS[method])
        else:
            raise ValueError(f"Unknown method {method!r}; choose from {sorted(METHODS)} or pass a Method.")
    return resolved
