"""The annotation tools a user would pick instead of cellrep, each trained offline on the reference.

* **CellTypist** (Domínguez Conde et al. 2022): ``celltypist.train`` on log1p CP10k values (its
  own preprocessing), ``celltypist.annotate`` on the query, with or without majority voting.
  Built-in models need a download, so the model is always trained from the reference.
* **SingleR** (Aran et al. 2019; the ``singler`` Python package): the reference's log values and
  labels as its own reference, classic markers, fine-tuning on.
* **scANVI** (Xu et al. 2021): scVI trained on the reference, then scANVI; the query is mapped
  scArches-style (``load_query_data`` and a short training of the query with frozen reference
  weights), and labels come from the model. Heavy: only on request.

Each ``predict`` returns the labels and a confidence per cell (for the novel-type task).
"""

from __future__ import annotations

import logging

import numpy as np

#: CellTypist's mini-batch SGD needs more cells than a batch; below its own threshold of
#: 10 000 cells it recommends plain SGD. Its full logistic regression path passes
#: ``multi_class='ovr'``, which scikit-learn >= 1.8 rejects, so SGD is used at every size.
CELLTYPIST_MINI_BATCH_CELLS = 10_000
#: CellTypist's default ``p_thres`` of ``mode='prob match'``: no class above it = "Unassigned".
CELLTYPIST_UNASSIGNED = 0.5
#: CellTypist's feature selection keeps its top 300 genes per class; on a smaller gene panel
#: it refuses, so it is used only above this many genes.
CELLTYPIST_FEATURE_SELECTION_GENES = 1000
SCANVI_REFERENCE_EPOCHS = 20
SCANVI_EPOCHS = 10
SCANVI_QUERY_EPOCHS = 10
SCANVI_UNKNOWN = 0.5


def _labels(adata, labels_key: str) -> np.ndarray:
    return adata.obs[labels_key].astype(str).to_numpy()


def log_cp10k(adata):
    """A copy of ``adata`` with log1p of counts per 10 000 in ``X`` (CellTypist's and scanpy's preprocessing)."""
    import scanpy as sc

    adata = adata.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def fit_celltypist(train, labels_key: str, seed: int):
    """``celltypist.train`` with feature selection (as its tutorial does for a custom model) on SGD."""
    import celltypist

    logging.getLogger("celltypist").setLevel(logging.ERROR)
    np.random.seed(seed)  # noqa: NPY002 - CellTypist samples its mini-batches with numpy's global generator
    mini_batch = train.n_obs >= CELLTYPIST_MINI_BATCH_CELLS
    return celltypist.train(
        log_cp10k(train),
        labels=_labels(train, labels_key),
        use_SGD=True,
        mini_batch=mini_batch,
        balance_cell_type=mini_batch,
        feature_selection=train.n_vars >= CELLTYPIST_FEATURE_SELECTION_GENES,
        random_state=seed,
    )


def _celltypist_predict(model, test, majority_voting: bool):
    import celltypist

    logging.getLogger("celltypist").setLevel(logging.ERROR)
    result = celltypist.annotate(log_cp10k(test), model=model, majority_voting=majority_voting)
    column = "majority_voting" if majority_voting else "predicted_labels"
    labels = result.predicted_labels[column].astype(str).to_numpy()
    return labels, result.probability_matrix.to_numpy().max(axis=1)


def predict_celltypist(model, test):
    return _celltypist_predict(model, test, majority_voting=False)


def predict_celltypist_majority(model, test):
    return _celltypist_predict(model, test, majority_voting=True)


def fit_singler(train, labels_key: str, seed: int):
    """SingleR's reference: the training cells' log CP10k values (genes × cells) and labels."""
    logged = log_cp10k(train)
    return logged.X, _labels(train, labels_key), np.asarray(train.var_names.astype(str))


def predict_singler(fitted, test):
    """``singler.train_single`` on the shared genes, ``classify_single`` with fine-tuning; confidence = delta."""
    import singler
    from scipy import sparse

    values, labels, genes = fitted
    logged = log_cp10k(test)
    reference = singler.train_single(
        sparse.csr_matrix(values.T),
        labels,
        ref_features=list(genes),
        test_features=list(logged.var_names.astype(str)),
    )
    result = singler.classify_single(sparse.csr_matrix(logged.X.T), ref_prebuilt=reference)
    return np.asarray(result.get_column("best")).astype(str), np.asarray(
        result.get_column("delta"), dtype=float
    )


def fit_scanvi(train, labels_key: str, seed: int):
    """scVI on the reference counts, then scANVI initialised from it (both on CPU)."""
    import scvi

    scvi.settings.seed = seed
    train = train.copy()
    train.obs["_label"] = _labels(train, labels_key)
    scvi.model.SCVI.setup_anndata(train, labels_key="_label")
    vae = scvi.model.SCVI(train)
    vae.train(max_epochs=SCANVI_REFERENCE_EPOCHS, enable_progress_bar=False, accelerator="cpu")
    scanvi = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown")
    scanvi.train(max_epochs=SCANVI_EPOCHS, enable_progress_bar=False, accelerator="cpu")
    return scanvi


def predict_scanvi(model, test):
    """scArches query mapping: ``load_query_data``, a short training on the query, ``predict``."""
    import scvi

    test = test.copy()
    test.obs["_label"] = "Unknown"
    scvi.model.SCANVI.prepare_query_anndata(test, model)
    query_model = scvi.model.SCANVI.load_query_data(test, model)
    query_model.train(
        max_epochs=SCANVI_QUERY_EPOCHS,
        plan_kwargs={"weight_decay": 0.0},
        check_val_every_n_epoch=None,
        enable_progress_bar=False,
        accelerator="cpu",
    )
    proba = query_model.predict(test, soft=True)
    labels = proba.columns.astype(str).to_numpy()[proba.to_numpy().argmax(axis=1)]
    return labels, proba.to_numpy().max(axis=1)
