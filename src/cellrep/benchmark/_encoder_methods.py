"""The transformer encoder in the benchmark: pretrained, untrained and fine-tuned, under a CPU budget.

- ``cellencoder``: CellEncoder with its defaults, pretrained without labels for
  ``encoder_minutes``, frozen; mean-pooled embedding + logistic regression.
- ``cellencoder_untrained``: the same model and initialisation (PCA gene embeddings of the
  same cells) with no pretraining step: what pretraining adds is the difference.
- ``cellencoder_finetuned``: the pretrained encoder fine-tuned with its supervised head on the
  training labels (``CellEncoder.finetune``, half the budget), predicting with that head.

Pretraining cells: the training cells; when the test cells come from batches (``obs['batch']``)
the training cells do not contain (leave-one-batch-out, cross-dataset, cross-species), the
union of training and test cells, without test labels, as a foundation model is applied to a
new dataset. The vocabulary is the ``N_GENES`` most variable genes of the pretraining cells
(``cr.pp.select_genes``, seurat_v3). A pretrained encoder is cached per split so that
``cellencoder`` and ``cellencoder_finetuned`` share it.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ._methods import Method, _labels

N_GENES = 3000
DEFAULT_ENCODER_MINUTES = float(os.environ.get("CELLREP_ENCODER_MINUTES", "1.0"))
FINETUNE_SHARE = 0.5
_settings = {"minutes": DEFAULT_ENCODER_MINUTES}
_cache: dict = {}


def set_encoder_minutes(minutes: float) -> None:
    """CPU budget (wall-clock minutes) of each encoder pretraining in the benchmark."""
    if not minutes > 0:
        raise ValueError(f"encoder minutes must be positive, got {minutes}.")
    _settings["minutes"] = float(minutes)


def _key(*parts) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()


def _pretraining_cells(train, test):
    """Training cells, or the union with the test cells when those come from unseen batches."""
    import anndata as ad

    if "batch" in train.obs and "batch" in test.obs:
        unseen = ~test.obs["batch"].astype(str).isin(train.obs["batch"].astype(str).unique())
        if unseen.all():
            union = ad.concat([train, test], join="inner")
            union.obs = union.obs[[]]
            union.obs_names_make_unique()
            return union
    cells = train.copy()
    cells.obs = cells.obs[[]]
    return cells


def _encoder(train, test, seed: int, trained: bool):
    """A CellEncoder on the pretraining cells' variable genes (cached per split and budget)."""
    import scvi

    from .. import model as cellrep_model
    from ..pp import select_genes

    minutes = _settings["minutes"]
    key = _key(
        tuple(train.obs_names), tuple(test.obs_names), tuple(test.var_names[:50]), seed, minutes, trained
    )
    if key in _cache:
        return _cache[key]
    cells = _pretraining_cells(train, test)
    n_top = min(N_GENES, cells.n_vars)
    select_genes(cells, method="hvg", n_top=n_top)
    cells = cells[:, cells.var["highly_variable"].to_numpy()].copy()
    cells.var = cells.var[[]]
    scvi.settings.seed = seed
    cellrep_model.CellEncoder.setup_anndata(cells)
    encoder = cellrep_model.CellEncoder(cells)
    if trained:
        encoder.train(max_time=minutes * 60, train_size=1.0, enable_progress_bar=False, accelerator="cpu")
    _cache.clear()  # keep one split's encoders at most
    _cache[key] = encoder
    return encoder


def _on_model_genes(adata, encoder):
    subset = adata[:, encoder.adata.var_names].copy()
    subset.obs = subset.obs[[]]
    return subset


class _Deferred:
    """``fit`` keeps the training cells; the encoder is built at ``predict``, when the test cells are known."""

    def __init__(self, train, labels_key: str, seed: int):
        self.train, self.labels_key, self.seed = train, labels_key, seed


def _probe_predict(deferred: _Deferred, test, trained: bool) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    encoder = _encoder(deferred.train, test, deferred.seed, trained)
    train_latent = encoder.get_latent_representation(_on_model_genes(deferred.train, encoder))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=deferred.seed))
    probe.fit(train_latent, _labels(deferred.train, deferred.labels_key))
    return np.asarray(
        probe.predict(encoder.get_latent_representation(_on_model_genes(test, encoder)))
    ).astype(str)


def _finetuned_predict(deferred: _Deferred, test) -> np.ndarray:
    encoder = _encoder(deferred.train, test, deferred.seed, True)
    train = _on_model_genes(deferred.train, encoder)
    train.obs[deferred.labels_key] = _labels(deferred.train, deferred.labels_key)
    tuned = encoder.finetune(
        train,
        labels_key=deferred.labels_key,
        max_time=_settings["minutes"] * 60 * FINETUNE_SHARE,
        train_size=1.0,
        enable_progress_bar=False,
        accelerator="cpu",
    )
    probabilities = tuned.predict(_on_model_genes(test, encoder))
    return probabilities.idxmax(axis=1).astype(str).to_numpy()


def encoder_methods() -> list[Method]:
    """The three encoder methods (not run by default: they take minutes each)."""
    budget = "--encoder-minutes of CPU pretraining"
    return [
        Method(
            "cellencoder",
            _Deferred,
            lambda deferred, test: _probe_predict(deferred, test, True),
            default=False,
            family="peer",
            slow=True,
            description=f"CellEncoder defaults, {budget}, mean pooling + LogisticRegression",
        ),
        Method(
            "cellencoder_untrained",
            _Deferred,
            lambda deferred, test: _probe_predict(deferred, test, False),
            default=False,
            family="peer",
            slow=True,
            description="CellEncoder defaults (PCA gene embeddings), no pretraining + LogisticRegression",
        ),
        Method(
            "cellencoder_finetuned",
            _Deferred,
            _finetuned_predict,
            default=False,
            family="peer",
            slow=True,
            description=f"CellEncoder pretrained ({budget}) then fine-tuned with its label head",
        ),
    ]
