"""Augmentation statistics, repacking, the schedule under a time budget, fine-tuning and the new-user path."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from anndata import AnnData
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from tests.model.model_fixtures import single_torch_thread  # noqa: F401

import cellrep as cr
from cellrep.model import CellEncoder
from cellrep.model._augment import binomial_thin, repack, subsample_genes
from cellrep.model._module import CellEncoderModule
from cellrep.model._training import training_arguments
from cellrep.model._trainingplan import CellEncoderTrainingPlan, learning_rate_factor

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def planted_types(n_per_type=40, n_types=3, n_genes=60, seed=0) -> AnnData:
    """Poisson counts where each type expresses its own block of 10 marker genes highly."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_types), n_per_type)
    means = np.full((labels.size, n_genes), 0.5)
    for label in range(n_types):
        means[labels == label, label * 10 : (label + 1) * 10] = 8.0
    depth = rng.lognormal(0, 0.3, size=(labels.size, 1))
    counts = rng.poisson(means * depth).astype(np.float32)
    adata = AnnData(sparse.csr_matrix(counts))
    adata.obs_names = [f"cell{i}" for i in range(labels.size)]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.obs["cell_type"] = pd.Categorical([f"type{label}" for label in labels])
    return adata


# --- augmentations ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_binomial_thinning_keeps_integers_and_has_mean_p_times_x(layout):
    counts = torch.full((400, 50), 40.0)
    counts[:, :5] = 0
    x = counts.to_sparse_csr() if layout == "csr" else counts
    torch.manual_seed(0)
    thinned = binomial_thin(x, 0.5)
    assert thinned.layout == x.layout
    values = thinned.to_dense()
    assert torch.equal(values, torch.floor(values))  # integers
    assert (values <= counts).all()
    assert (values[:, :5] == 0).all()
    # per cell the kept fraction is p_i ~ U(0.5, 1): mean 0.75, and E[thinned] = p_i x
    fractions = values[:, 5:].mean(1) / 40
    assert fractions.min() > 0.45
    assert fractions.max() < 1.02
    np.testing.assert_allclose(fractions.mean().item(), 0.75, atol=0.02)
    # given p_i, Binomial(40, p_i) has variance 40 p (1 - p): the within-cell spread matches it
    torch.manual_seed(0)
    p = 0.5 + 0.5 * torch.rand(400, dtype=torch.float64)
    np.testing.assert_allclose(fractions.numpy(), p.numpy(), atol=0.06)
    assert binomial_thin(x, 1.0) is x


def test_repacked_views_encode_to_the_same_cells():
    torch.manual_seed(0)
    module = CellEncoderModule(30, n_layers=2, d_model=16, n_heads=2, max_seq_len=20).eval()
    counts = torch.poisson(torch.full((12, 30), 2.0))
    tokens = module.tokenize(counts)
    view = subsample_genes(tokens, 0.5)
    packed = repack(view)
    assert packed.gene_ids.shape[1] < view.gene_ids.shape[1]
    assert torch.equal(packed.gene_token_mask.sum(1), view.gene_token_mask.sum(1))
    with torch.no_grad():
        from cellrep.model._module import pool

        loose = pool(module.encode(view), view, "mean")
        tight = pool(module.encode(packed), packed, "mean")
    torch.testing.assert_close(tight, loose, rtol=1e-5, atol=1e-6)


# --- schedule ---------------------------------------------------------------------------------
def test_learning_rate_warms_up_then_decays_to_zero():
    assert learning_rate_factor(0.05, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(0.1, 0.1) == pytest.approx(1.0)
    assert learning_rate_factor(0.55, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor(3.0, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_schedule_follows_the_time_budget():
    module = CellEncoderModule(10, n_layers=1, d_model=8, n_heads=2, max_seq_len=4)
    plan = CellEncoderTrainingPlan(module, lr=1e-3, warmup_fraction=0.1, time_budget=100.0)
    now = [0.0]
    plan.clock = lambda: now[0]
    plan.on_train_start()
    rates = {}
    for seconds in (5, 10, 55, 99.9, 120):
        now[0] = seconds
        rates[seconds] = plan._learning_rate()
    assert rates[5] == pytest.approx(5e-4)
    assert rates[10] == pytest.approx(1e-3)
    assert rates[55] == pytest.approx(5e-4)
    assert rates[99.9] < 1e-6
    assert rates[120] == 0


def test_training_arguments_size_epochs_batches_and_budget():
    with pytest.warns(UserWarning, match="fewer than 4 optimiser steps"):
        arguments = training_arguments(900, 10, 1024, None, None, None)
    assert arguments.batch_size == 202  # 810 training cells / 4
    timed = training_arguments(900, None, 64, {"minutes": 2}, 1.0, {"lr": 1e-3})
    assert timed.plan_kwargs == {"lr": 1e-3, "time_budget": 120.0}
    assert timed.trainer_kwargs["max_time"].total_seconds() == 120
    assert timed.max_epochs > 1000
    assert training_arguments(900, None, 64, None, None, None).max_epochs == 20
    with pytest.raises(ValueError, match="max_time"):
        training_arguments(900, None, 64, -1, None, None)


def test_time_budget_stops_training_and_history_is_numeric(caplog):
    adata = planted_types()
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, n_layers=1, d_model=16, n_heads=2, max_seq_len=16)
    with caplog.at_level(logging.INFO), pytest.warns() as record:
        model.train(max_time=3, batch_size=32, **QUIET)
    assert "litlogger" not in caplog.text
    assert not [w for w in record if "sparse" in str(w.message).lower()]
    history = model.history
    assert 1 <= len(history["train_loss"]) < 1000
    for frame in history.values():
        assert all(np.issubdtype(dtype, np.number) for dtype in frame.dtypes)
    assert history["lr"].iloc[-1, 0] < 1e-3  # below the peak: the cosine ran within the 3 s


def test_auto_chunk_runs_the_replay_only_when_the_batch_does_not_fit():
    module = CellEncoderModule(10, n_layers=2, d_model=16, n_heads=2, max_seq_len=8)
    plan = CellEncoderTrainingPlan(module)
    assert plan.effective_chunk_size(256) is None
    plan.memory_bytes = 10_000
    assert plan.effective_chunk_size(256) == 64
    assert CellEncoderTrainingPlan(module, chunk_size=16).effective_chunk_size(256) == 16
    with pytest.raises(ValueError, match="chunk_size"):
        CellEncoderTrainingPlan(module, chunk_size=0)


# --- defaults, new-user path, fine-tuning ----------------------------------------------------
def test_new_user_defaults_separate_planted_types():
    adata = planted_types()
    CellEncoder.setup_anndata(adata)
    scvi.settings.seed = 0
    model = CellEncoder(adata)
    model.train(max_epochs=2, **QUIET)
    latent = model.get_latent_representation()
    assert latent.shape == (adata.n_obs, 64)
    labels = adata.obs["cell_type"].to_numpy()
    accuracy = cross_val_score(LogisticRegression(max_iter=1000), latent, labels, cv=3).mean()
    assert accuracy > 0.95


def test_pca_gene_embedding_is_the_default_and_random_is_an_option():
    adata = planted_types()
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, d_model=16, n_heads=2)
    table = model.module.encoder.embedding.gene.weight[: adata.n_vars].detach().numpy()
    np.testing.assert_allclose(np.sqrt((table**2).mean()), 1.0, rtol=1e-5)
    # marker blocks of one type point the same way, away from the other types'
    first, second = table[:10].mean(0), table[10:20].mean(0)
    cosine = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cosine(table[0], first) > 0.8
    assert cosine(first, second) < 0.5
    with pytest.raises(ValueError, match="gene_embedding must be"):
        CellEncoder(adata, gene_embedding="word2vec")
    random = CellEncoder(adata, d_model=16, n_heads=2, gene_embedding="random")
    assert not np.allclose(
        random.module.encoder.embedding.gene.weight[: adata.n_vars].detach().numpy(), table
    )


def test_finetune_writes_predictions_like_transfer_labels():
    adata = planted_types()
    reference = adata.copy()
    reference.obs = reference.obs[[]]
    CellEncoder.setup_anndata(reference)
    scvi.settings.seed = 0
    pretrained = CellEncoder(reference, n_layers=1, d_model=16, n_heads=2, max_seq_len=16)
    pretrained.train(max_epochs=1, **QUIET)
    before = pretrained.get_latent_representation()
    tuned = pretrained.finetune(adata.copy(), labels_key="cell_type", max_epochs=15, **QUIET)
    np.testing.assert_array_equal(pretrained.get_latent_representation(), before)  # untouched
    query = planted_types(seed=1)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    query.obs = query.obs[[]]
    proba = tuned.predict(query, key_added="encoder")
    assert list(proba.columns) == ["type0", "type1", "type2"]
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert isinstance(query.obs["encoder_pred"].dtype, pd.CategoricalDtype)
    np.testing.assert_allclose(query.obs["encoder_confidence"], proba.max(1), rtol=1e-6)
    assert query.obsm["encoder_proba"].shape == (query.n_obs, 3)
    assert (query.obs["encoder_pred"].astype(str).to_numpy() == truth).mean() > 0.9
    with pytest.raises(ValueError, match="finetune"):
        pretrained.predict(query)


def test_length_buckets_give_the_same_states_without_a_mask():
    torch.manual_seed(0)
    module = CellEncoderModule(30, n_layers=2, d_model=16, n_heads=2, max_seq_len=20).eval()
    counts = torch.poisson(torch.full((12, 30), 0.5))
    tokens = module.tokenize(counts)
    assert tokens.padding_mask.any()
    with torch.no_grad():
        padded = module.encode(tokens)
        module.length_buckets = True
        bucketed = module.encode(tokens)
    real = ~tokens.padding_mask
    torch.testing.assert_close(bucketed[real], padded[real], rtol=1e-5, atol=1e-5)


def test_only_the_most_variable_genes_become_tokens():
    adata = planted_types()
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, d_model=16, n_heads=2, n_token_genes=30)
    token_genes = model.module.token_genes.numpy()
    assert token_genes.sum() == 30
    reference = adata.copy()
    cr.pp.select_genes(reference, method="hvg", n_top=30)  # seurat_v3, tested against scanpy in tests/pp
    np.testing.assert_array_equal(token_genes, reference.var["highly_variable"].to_numpy())
    tokens = model.module.tokenize(torch.as_tensor(adata.X.toarray()))
    assert set(tokens.gene_ids[tokens.gene_token_mask].unique().tolist()) <= set(np.flatnonzero(token_genes))
    table = model.module.encoder.embedding.gene.weight[: adata.n_vars].detach().numpy()
    assert (table[~token_genes] == 0).all()


def test_training_after_an_embedding_runs_in_training_mode():
    adata = planted_types()
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, n_layers=1, d_model=16, n_heads=2, max_seq_len=16)
    model.get_latent_representation()  # leaves the module in eval mode
    modes = []
    hook = model.module.encoder.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train(max_steps=1, batch_size=32, train_size=1.0, **QUIET)
    hook.remove()
    assert modes
    assert all(modes)  # dropout active: Lightning does not switch the mode itself
