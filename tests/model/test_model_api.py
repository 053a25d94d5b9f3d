"""CellEncoder user API: setup validation, training, save/load, seeds, queries, tl wrappers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scvi
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.model.model_fixtures import single_torch_thread  # noqa: F401

import cellrep as cr
from cellrep.model import CellEncoder

TINY = {"n_layers": 1, "d_model": 16, "n_heads": 2, "max_seq_len": 16}
FAST_TRAIN = {"max_epochs": 1, "batch_size": 32, "enable_progress_bar": False, "enable_model_summary": False}


def counts_adata(n_cells=60, seed=0):
    adata = make_adata(sparse.csr_matrix(synthetic_counts(n_cells, 40, seed=seed).astype(np.float32)))
    adata.layers["counts"] = adata.X.copy()
    return adata


def trained_model(adata=None, *, seed=0, model_kwargs=None, plan_kwargs=None, train_kwargs=None, **setup):
    adata = counts_adata() if adata is None else adata
    CellEncoder.setup_anndata(adata, **setup)
    scvi.settings.seed = seed
    model = CellEncoder(adata, **(TINY | (model_kwargs or {})))
    model.train(**FAST_TRAIN, **(train_kwargs or {}), plan_kwargs={"chunk_size": 8} | (plan_kwargs or {}))
    return model


@pytest.fixture(scope="module")
def model():
    return trained_model(layer="counts")


# --- setup_anndata -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.X.data.__setitem__(0, -1.0), "negative"),
        (lambda a: a.X.data.__setitem__(0, 0.5), "non-integer"),
        (lambda a: a.X.data.__setitem__(0, np.nan), "NaN"),
    ],
)
def test_setup_rejects_values_that_are_not_counts(change, message):
    adata = counts_adata()
    change(adata)
    with pytest.raises(ValueError, match=message):
        CellEncoder.setup_anndata(adata)


def test_setup_rejects_missing_layer_columns_and_duplicate_genes():
    adata = counts_adata()
    with pytest.raises(ValueError, match="Layer 'raw' not found"):
        CellEncoder.setup_anndata(adata, layer="raw")
    with pytest.raises(ValueError, match="not a column"):
        CellEncoder.setup_anndata(adata, labels_key="celltype")
    adata.var_names = ["g"] * adata.n_vars
    with pytest.raises(ValueError, match="unique"):
        CellEncoder.setup_anndata(adata)


def test_init_rejects_bad_options():
    adata = counts_adata()
    CellEncoder.setup_anndata(adata)
    with pytest.raises(ValueError, match="tokenization must be one of"):
        CellEncoder(adata, tokenization="bins")
    with pytest.raises(ValueError, match="divisible"):
        CellEncoder(adata, d_model=10, n_heads=3)


# --- training --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weights", "model_kwargs"),
    [
        ({"mlm_weight": 1.0, "contrastive_weight": 0.0}, {"tokenization": "adaptive_bins"}),
        ({"mlm_weight": 0.0, "contrastive_weight": 1.0}, {"attention": "performer"}),
        ({"mlm_weight": 1.0, "contrastive_weight": 1.0}, {"tokenization": "rank"}),
        ({"mlm_weight": 1.0, "contrastive_weight": 1.0, "supervised_weight": 1.0}, {"tokenization": "value"}),
        ({"mlm_weight": 0.0, "contrastive_weight": 0.0, "supervised_weight": 1.0}, {}),
        ({"mlm_weight": 0.0, "contrastive_weight": 1.0, "supervised_weight": 1.0}, {}),
        ({"mlm_weight": 1.0, "contrastive_weight": 0.0, "supervised_weight": 1.0}, {}),
    ],
)
def test_one_epoch_with_each_objective_combination(weights, model_kwargs):
    model = trained_model(
        labels_key="cell_type",
        model_kwargs=model_kwargs,
        plan_kwargs=weights,
        train_kwargs={"check_val_every_n_epoch": 1},
    )
    history = model.history
    for name in ("mlm", "contrastive", "supervised"):
        train, validation = (
            history[f"{name}_loss_train"].iloc[-1, 0],
            history[f"{name}_loss_validation"].iloc[-1, 0],
        )
        assert np.isfinite(train)
        assert np.isfinite(validation)
        assert (train > 0) == (weights.get(f"{name}_weight", 0.0) > 0)
    assert {"train_loss", "validation_loss", "lr"} <= set(history)
    latent = model.get_latent_representation()
    assert latent.shape == (60, 16)
    assert np.isfinite(latent).all()


def test_training_changes_the_weights_and_latent_has_cells_by_d(model):
    latent = model.get_latent_representation()
    assert latent.shape == (60, 16)
    assert model.get_latent_representation(pooling="mean").shape == (60, 16)
    assert model.is_trained_
    with pytest.raises(ValueError, match="pooling"):
        model.get_latent_representation(pooling="max")


def test_same_seed_gives_identical_latent():
    first = trained_model(seed=7).get_latent_representation()
    second = trained_model(seed=7).get_latent_representation()
    third = trained_model(seed=8).get_latent_representation()
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, third)


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path / "encoder", overwrite=True)
    loaded = CellEncoder.load(tmp_path / "encoder", adata=model.adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    assert loaded.module.encoder.blocks[0].attention.n_heads == 2
    assert len(loaded.module.encoder.blocks) == 1


# --- queries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("matrix_format", ["dense", "csr", "csc"])
def test_query_in_every_format_and_dtype_matches(model, matrix_format, dtype):
    query = make_adata(as_format(synthetic_counts(60, 40, seed=0), matrix_format, dtype))
    query.layers["counts"] = query.X
    np.testing.assert_allclose(
        model.get_latent_representation(query), model.get_latent_representation(), rtol=1e-5, atol=1e-6
    )


def test_sparse_arrays_rejected_at_setup_but_fine_as_query(model):
    adata = counts_adata()
    adata.X = sparse.csr_array(adata.X)
    with pytest.raises(TypeError, match="csr_matrix"):
        CellEncoder.setup_anndata(adata)
    query = model.adata.copy()
    query.layers["counts"] = sparse.csr_array(query.layers["counts"])
    del query.uns["_scvi_uuid"]
    np.testing.assert_array_equal(model.get_latent_representation(query), model.get_latent_representation())


def test_query_with_shuffled_genes_gives_the_same_latent(model):
    order = np.random.default_rng(0).permutation(model.adata.n_vars)
    query = model.adata[:, order].copy()
    query.obs = query.obs[[]]
    np.testing.assert_array_equal(model.get_latent_representation(query), model.get_latent_representation())


def test_query_with_missing_genes_warns_and_treats_them_as_zero(model):
    kept = model.adata.var_names[5:]
    query = model.adata[:, kept].copy()
    reference = model.adata.copy()
    reference.layers["counts"][:, :5] = 0
    with pytest.warns(UserWarning, match="5 of the 40 model genes are missing"):
        latent = model.get_latent_representation(query)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(latent, model.get_latent_representation(reference[:, :]), rtol=1e-6)


def test_query_without_shared_genes_is_an_error(model, tmp_path):
    query = model.adata.copy()
    query.var_names = [f"other{i}" for i in range(query.n_vars)]
    with pytest.raises(ValueError, match="Only 0 of 40 reference genes"):
        model.get_latent_representation(query)
    model.save(tmp_path / "m", overwrite=True)
    with pytest.raises(ValueError, match="Only 0 of 40 reference genes"):
        CellEncoder.load(tmp_path / "m", adata=query)


def test_load_on_other_gene_order_aligns(model, tmp_path):
    model.save(tmp_path / "m", overwrite=True)
    query = model.adata[:, model.adata.var_names[::-1]].copy()
    loaded = CellEncoder.load(tmp_path / "m", adata=query)
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())


def test_gene_embedding_initialisation_and_freezing():
    adata = counts_adata()
    CellEncoder.setup_anndata(adata)
    import pandas as pd

    table = pd.DataFrame(np.ones((3, 16)), index=["gene3", "gene4", "not_a_gene"])
    model = CellEncoder(adata, **TINY, gene_embedding=table, freeze_gene_embedding=True)
    weights = model.module.encoder.embedding.gene.weight
    assert (weights[3:5] == 1).all()
    assert not (weights[5] == 1).all()
    assert not weights.requires_grad
    with pytest.raises(ValueError, match="columns but d_model"):
        CellEncoder(adata, **TINY, gene_embedding=np.ones((40, 8)))


# --- tl wrappers ---------------------------------------------------------------------------------
def test_tl_encode_writes_obsm(model):
    adata = model.adata.copy()
    cr.tl.encode(adata, model, batch_size=16)
    # another batch size pads to other lengths: equal up to float32 rounding
    np.testing.assert_allclose(
        adata.obsm["X_cellencoder"], model.get_latent_representation(), rtol=1e-5, atol=1e-6
    )
    assert adata.uns["cellencoder"]["params"]["pooling"] == "mean"


def test_gene_attention_matches_a_direct_average(model):
    genes = ["gene5", "gene9", "gene12"]
    frame = model.get_gene_attention(genes=genes)
    assert list(frame.index) == genes
    assert (frame.to_numpy() >= 0).all()
    assert (frame.to_numpy() <= 1).all()
    # reference: per-cell explicit attention, averaged over the cells expressing both genes
    import torch

    adata = model.adata
    tokens = model.module.tokenize(torch.as_tensor(adata.layers["counts"].toarray()))
    with torch.no_grad():
        attention = model.module.encoder.attention_probabilities(tokens, -1).numpy()
    ids = tokens.gene_ids.numpy()
    for a, gene_a in enumerate(genes):
        for b, gene_b in enumerate(genes):
            ia, ib = adata.var_names.get_loc(gene_a), adata.var_names.get_loc(gene_b)
            values = [
                attention[c, np.flatnonzero(ids[c] == ia)[0], np.flatnonzero(ids[c] == ib)[0]]
                for c in range(adata.n_obs)
                if (ids[c] == ia).any() and (ids[c] == ib).any()
            ]
            expected = np.mean(values) if values else 0.0
            np.testing.assert_allclose(frame.iloc[a, b], expected, rtol=1e-5)
    target = adata.copy()
    cr.tl.gene_attention(target, model, genes=genes)
    stored = target.varp["gene_attention"]
    assert sparse.issparse(stored)
    assert stored.shape == (40, 40)
    np.testing.assert_allclose(
        stored[adata.var_names.get_loc("gene9"), adata.var_names.get_loc("gene5")],
        frame.iloc[1, 0],
        rtol=1e-6,
    )
    full = model.get_gene_attention()
    assert full.shape == (40, 40)
