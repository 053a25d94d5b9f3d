import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse, special, stats
from tests.conftest import as_format, read_shared

import cellrep as cr
from cellrep._array._offset import OffsetSparseMatrix
from cellrep._array._sctop import (
    group_mean_fractions,
    group_mean_fractions_float32,
    project_onto_basis,
    projection_weights,
)

sctop = pytest.importorskip("sctop")

TYPES = ["beta", "alpha", "ductal"]  # categorical order, deliberately not sorted


@pytest.fixture(autouse=True)
def sctop_without_compilation(request, monkeypatch):
    """Run sctop's rank kernel as plain Python on the small test data: the same code without a
    numba compilation (sctop does not cache it) of several seconds in every session."""
    if request.node.get_closest_marker("shared_data") is None:
        kernel = sctop.processing._compute_ranks_parallel
        monkeypatch.setattr(sctop.processing, "_compute_ranks_parallel", getattr(kernel, "py_func", kernel))


def typed_counts(
    n_cells: int = 60, n_genes: int = 120, *, seed: int = 0, matrix_format="csr", dtype=np.float32
):
    """Counts where each type over-expresses its own block of genes; a few all-zero genes."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n_cells) % len(TYPES)
    rates = rng.gamma(0.8, 1.5, size=n_genes)[None, :] * rng.lognormal(0, 0.3, size=(n_cells, 1))
    for code in range(len(TYPES)):
        rates[codes == code, 10 + code * 10 : 20 + code * 10] += 5.0
    counts = rng.poisson(rates)
    counts[:, :3] = 0
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.array(TYPES)[codes], categories=TYPES)},
        index=[f"c{seed}_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_genes)])
    return ad.AnnData(as_format(counts, matrix_format, dtype), obs=obs, var=var)


def genes_by_cells(adata) -> pd.DataFrame:
    """The ``sctop`` input: a genes × cells DataFrame (built as the benchmark builds it)."""
    values = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    return pd.DataFrame(values.T, index=adata.var_names, columns=adata.obs_names)


def sctop_package_basis(ref, types=TYPES) -> pd.DataFrame:
    labels = ref.obs["cell_type"].astype(str).to_numpy()
    profiles = [sctop.process(genes_by_cells(ref[labels == name]), average=True) for name in types]
    basis = pd.concat(profiles, axis=1)
    basis.columns = list(types)
    return basis


def dense_rank_probit(values: np.ndarray) -> np.ndarray:
    """Independent reference of the per-cell transform: scipy average ranks → ndtri → unit norm."""
    ranks = stats.rankdata(values, axis=1)
    z = special.ndtri(ranks / (values.shape[1] + 1))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def query_with_other_genes(seed: int, matrix_format: str, dtype):
    """A query that lacks 10 reference genes, holds 15 of its own and orders its genes differently."""
    query = typed_counts(45, 135, seed=seed, matrix_format=matrix_format, dtype=dtype)
    query.var_names = [f"g{j}" for j in range(120)] + [f"other{j}" for j in range(15)]
    order = np.random.default_rng(seed).permutation(np.arange(10, 135))  # g0 … g9 are missing
    return query[:, order].copy()


@pytest.fixture
def ref(matrix_format, dtype):
    return typed_counts(matrix_format=matrix_format, dtype=dtype)


def test_basis_matches_sctop_process(ref):
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type")
    expected = sctop_package_basis(ref)
    assert list(basis.columns) == TYPES
    pd.testing.assert_index_equal(basis.index, ref.var_names)
    np.testing.assert_allclose(basis.to_numpy(), expected.to_numpy(), atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(basis.to_numpy(), axis=0), 1.0, rtol=1e-12)


def test_scores_match_sctop_package(ref, matrix_format, dtype):
    query = query_with_other_genes(1, matrix_format, dtype)
    scores = cr.tl.sctop_score(query, cr.tl.sctop_basis(ref, labels_key="cell_type"), inplace=False)
    expected = sctop.score(sctop_package_basis(ref), sctop.process(genes_by_cells(query)))
    assert list(scores.columns) == TYPES
    pd.testing.assert_index_equal(scores.index, query.obs_names)
    np.testing.assert_allclose(scores.to_numpy(), expected.to_numpy().T, atol=1e-5)
    # the types are told apart: every cell scores highest on its own type
    np.testing.assert_array_equal(scores.idxmax(axis=1), query.obs["cell_type"].astype(str))


def test_scores_are_least_squares_coordinates(ref, matrix_format, dtype):
    query = query_with_other_genes(2, matrix_format, dtype)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    scores = cr.tl.sctop_score(query, basis, inplace=False)
    dense = query.X.toarray() if sparse.issparse(query.X) else np.asarray(query.X)
    transformed = pd.DataFrame(dense_rank_probit(dense.astype(np.float64)), columns=query.var_names)
    shared = basis.index.intersection(query.var_names)
    expected, *_ = np.linalg.lstsq(basis.loc[shared].to_numpy(), transformed[shared].to_numpy().T, rcond=None)
    np.testing.assert_allclose(scores.to_numpy(), expected.T, atol=1e-6)


def test_sctop_rounding_ties_tiny_means_with_unexpressed_genes():
    """One huge cell makes the mean fraction of five genes ~2e-8: sctop's float32 log2(1 + x) ties them with zeros."""
    ref = typed_counts(30, 40, seed=3, matrix_format="dense", dtype=np.int64)
    extra = np.zeros((ref.n_obs, 6), dtype=np.int64)
    huge_cell = 0  # a "beta" cell
    extra[huge_cell, 0] = 10_000_000
    extra[huge_cell, 1:] = 1
    counts = np.hstack([ref.X, extra])
    ref = ad.AnnData(
        counts, obs=ref.obs, var=pd.DataFrame(index=[*ref.var_names, "huge", "t1", "t2", "t3", "t4", "t5"])
    )
    tiny_genes, zero_gene = ["t1", "t2", "t3", "t4", "t5"], "g0"

    rounded = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    np.testing.assert_allclose(rounded.to_numpy(), sctop_package_basis(ref).to_numpy(), atol=1e-7)
    np.testing.assert_array_equal(rounded.loc[tiny_genes, "beta"], rounded.loc[zero_gene, "beta"])

    exact = cr.tl.sctop_basis(ref, labels_key="cell_type", match_sctop=False, inplace=False)
    beta = (ref.obs["cell_type"] == "beta").to_numpy()
    fractions = counts[beta] / counts[beta].sum(axis=1, keepdims=True)
    expected = special.ndtri(stats.rankdata(fractions.mean(axis=0)) / (ref.n_vars + 1))
    np.testing.assert_allclose(exact["beta"], expected / np.linalg.norm(expected), atol=1e-12)
    assert (exact.loc[tiny_genes, "beta"] > exact.loc[zero_gene, "beta"]).all()


def test_basis_storage(ref):
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", key_added="types")
    np.testing.assert_array_equal(ref.varm["types_basis"], basis.to_numpy())
    assert list(ref.uns["types"]["cell_types"]) == TYPES
    np.testing.assert_array_equal(ref.uns["types"]["n_cells"], [20, 20, 20])
    assert ref.uns["types"]["params"] == {
        "labels_key": "cell_type",
        "min_cells": 2,
        "layer": None,
        "match_sctop": True,
    }


def test_basis_not_inplace_leaves_ref_alone():
    ref = typed_counts()
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    assert basis.shape == (ref.n_vars, 3)
    assert "sctop_basis" not in ref.varm
    assert "sctop" not in ref.uns


def test_basis_from_layer_and_string_labels():
    ref = typed_counts()
    expected = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    ref.layers["counts"] = ref.X.copy()
    ref.X = sparse.csr_matrix(ref.shape, dtype=np.float32)
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(str)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", layer="counts", inplace=False)
    # plain strings come in sorted order
    pd.testing.assert_frame_equal(basis, expected[sorted(TYPES)])


def test_rare_types_and_missing_labels_are_left_out():
    ref = typed_counts()
    labels = ref.obs["cell_type"].astype(object).to_numpy()
    labels[:2] = "rare"
    labels[2:5] = np.nan
    ref.obs["cell_type"] = pd.Categorical(labels, categories=[*TYPES, "rare"])
    with pytest.warns(UserWarning, match="missing|fewer than 3") as record:
        basis = cr.tl.sctop_basis(ref, labels_key="cell_type", min_cells=3)
    messages = [str(warning.message) for warning in record]
    assert any("3 cells have a missing" in message for message in messages)
    assert any("fewer than 3 cells are ignored: ['rare']" in message for message in messages)
    assert list(basis.columns) == TYPES
    kept = ~ref.obs["cell_type"].isin(["rare"]).to_numpy() & ref.obs["cell_type"].notna().to_numpy()
    expected = sctop_package_basis(ref[kept])
    np.testing.assert_allclose(basis.to_numpy(), expected.to_numpy(), atol=1e-7)
    np.testing.assert_array_equal(ref.uns["sctop"]["n_cells"], np.bincount(np.arange(5, 60) % 3))


def test_basis_errors_leave_ref_untouched():
    ref = typed_counts(matrix_format="dense", dtype=np.float64)
    before = ref.copy()
    with pytest.raises(ValueError, match="not a column"):
        cr.tl.sctop_basis(ref, labels_key="missing")
    with pytest.raises(ValueError, match="min_cells"):
        cr.tl.sctop_basis(ref, labels_key="cell_type", min_cells=0)
    with (
        pytest.raises(ValueError, match="at least two classes"),
        pytest.warns(UserWarning, match="fewer than 100"),
    ):
        cr.tl.sctop_basis(ref, labels_key="cell_type", min_cells=100)
    negative = ref.copy()
    negative.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        cr.tl.sctop_basis(negative, labels_key="cell_type")
    duplicated = ref.copy()
    duplicated.var_names = ["g0", *ref.var_names[:-1]]
    with pytest.raises(ValueError, match="var_names_make_unique"):
        cr.tl.sctop_basis(duplicated, labels_key="cell_type")
    empty_type = ref.copy()
    empty_type.X[(ref.obs["cell_type"] == "alpha").to_numpy()] = 0
    with pytest.raises(ValueError, match=r"\['alpha'\] have no counts"):
        cr.tl.sctop_basis(empty_type, labels_key="cell_type")
    assert not before.varm
    assert not ref.varm
    assert ref.uns.keys() == before.uns.keys()
    np.testing.assert_array_equal(ref.X, before.X)


def test_score_outputs():
    ref = typed_counts()
    cr.tl.sctop_basis(ref, labels_key="cell_type")
    query = query_with_other_genes(4, "csr", np.float32)
    expected = cr.tl.sctop_score(query, ref, inplace=False)
    assert cr.tl.sctop_score(query, ref) is None
    np.testing.assert_array_equal(query.obsm["X_sctop"], expected.to_numpy())
    label = query.obs["sctop_label"]
    assert list(label.cat.categories) == TYPES
    np.testing.assert_array_equal(label.astype(str), expected.idxmax(axis=1))
    assert list(query.uns["X_sctop"]["cell_types"]) == TYPES
    assert query.uns["X_sctop"]["n_shared_genes"] == 110
    assert query.uns["X_sctop"]["params"] == {"layer": None, "basis_key": "sctop"}
    # the plotting function reads this layout
    figure = cr.pl.sctop_scores(query, groupby="cell_type")
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == TYPES


def test_score_with_custom_keys_and_layer():
    ref = typed_counts()
    cr.tl.sctop_basis(ref, labels_key="cell_type", key_added="pancreas")
    query = query_with_other_genes(5, "csc", np.int64)
    expected = cr.tl.sctop_score(query, ref, basis_key="pancreas", inplace=False)
    query.layers["counts"] = query.X.copy()
    query.X = sparse.csr_matrix(query.shape, dtype=np.float32)
    cr.tl.sctop_score(query, ref, basis_key="pancreas", layer="counts", key_added="X_pancreas")
    np.testing.assert_array_equal(query.obsm["X_pancreas"], expected.to_numpy())
    assert "pancreas_label" in query.obs
    assert query.uns["X_pancreas"]["params"] == {"layer": "counts", "basis_key": "pancreas"}


def test_gene_order_of_the_query_does_not_matter():
    ref, query = typed_counts(), typed_counts(30, seed=6)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    order = np.random.default_rng(0).permutation(query.n_vars)
    shuffled = query[:, order].copy()
    np.testing.assert_allclose(
        cr.tl.sctop_score(shuffled, basis, inplace=False),
        cr.tl.sctop_score(query, basis, inplace=False),
        atol=1e-12,
    )


def test_query_is_never_densified(monkeypatch):
    ref, query = typed_counts(), typed_counts(30, seed=7)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    expected = cr.tl.sctop_score(query, basis, inplace=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the query was densified")

    monkeypatch.setattr(OffsetSparseMatrix, "toarray", refuse)
    monkeypatch.setattr(OffsetSparseMatrix, "__array__", refuse)
    np.testing.assert_array_equal(cr.tl.sctop_score(query, basis, inplace=False), expected)


def test_cells_without_counts_get_zero_scores_and_no_label():
    ref, query = typed_counts(), typed_counts(30, seed=8, matrix_format="dense", dtype=np.float64)
    query.X[3] = 0
    with pytest.warns(UserWarning, match="constant"):
        cr.tl.sctop_score(query, cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False))
    np.testing.assert_array_equal(query.obsm["X_sctop"][3], 0)
    assert pd.isna(query.obs["sctop_label"].iloc[3])
    assert query.obs["sctop_label"].notna().sum() == 29


def test_low_overlap_warns():
    ref, query = typed_counts(), typed_counts(30, seed=9)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    part = query[:, 40:].copy()
    with pytest.warns(UserWarning, match="Only 80 of the 120 basis genes"):
        cr.tl.sctop_score(part, basis, overlap_warning=0.9)


def test_score_errors_leave_query_untouched():
    ref, query = typed_counts(), typed_counts(30, seed=10)
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False)
    before = query.copy()
    renamed = basis.rename(index=lambda gene: f"human_{gene}")
    with pytest.raises(ValueError, match="Only 0 of 120"):
        cr.tl.sctop_score(query, renamed)
    with pytest.raises(ValueError, match="no scTOP basis"):
        cr.tl.sctop_score(query, typed_counts())
    with pytest.raises(TypeError, match="reference AnnData or a genes × types DataFrame"):
        cr.tl.sctop_score(query, basis.to_numpy())
    with_nan = basis.copy()
    with_nan.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cr.tl.sctop_score(query, with_nan)
    collinear = basis.assign(copy_of_beta=basis["beta"])
    with pytest.raises(ValueError, match="copy_of_beta"):
        cr.tl.sctop_score(query, collinear)
    with (
        pytest.raises(ValueError, match="at least as many shared genes as types"),
        pytest.warns(UserWarning, match="Only 2 of the 120"),
    ):
        cr.tl.sctop_score(query[:, :2].copy(), basis)
    with pytest.raises(ValueError, match="Layer 'counts' not found"):
        cr.tl.sctop_score(query, basis, layer="counts")
    assert not query.obsm
    assert "sctop_label" not in query.obs
    assert query.uns.keys() == before.uns.keys()


def test_transfer_labels_with_sctop_uses_these_scores():
    ref, query = typed_counts(), typed_counts(30, seed=11)
    scores = cr.tl.sctop_score(
        query, cr.tl.sctop_basis(ref, labels_key="cell_type", inplace=False), inplace=False
    )
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", method="sctop")
    np.testing.assert_array_equal(query.obs["cell_type_pred"].astype(str), scores.idxmax(axis=1))


@settings(max_examples=25, deadline=None)
@given(
    n_genes=st.integers(3, 30),
    n_types=st.integers(1, 3),
    n_cells=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_projection_weights_are_the_pseudoinverse(n_genes, n_types, n_cells, seed):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(n_genes, n_types))
    weights = projection_weights(basis)
    np.testing.assert_allclose(weights, np.linalg.pinv(basis).T, atol=1e-9)
    np.testing.assert_allclose(weights.T @ basis, np.eye(n_types), atol=1e-9)
    deltas = sparse.random(n_cells, n_genes, density=0.3, random_state=seed, format="csr")
    values = OffsetSparseMatrix(deltas, rng.normal(size=n_cells))
    np.testing.assert_allclose(project_onto_basis(values, weights), values.toarray() @ weights, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    counts=st.integers(1, 12).flatmap(
        lambda n_genes: st.lists(
            st.lists(st.integers(0, 50), min_size=n_genes, max_size=n_genes), min_size=1, max_size=10
        )
    ),
    seed=st.integers(0, 2**16),
)
def test_float32_group_means_follow_sctop_rounding(counts, seed):
    counts = np.array(counts, dtype=np.int64)
    codes = np.random.default_rng(seed).integers(-1, 3, size=counts.shape[0])
    means = group_mean_fractions_float32(sparse.csc_matrix(counts), codes, 3)
    exact = group_mean_fractions(counts, codes, 3)
    totals = counts.sum(axis=1, keepdims=True).astype(np.float32)
    fractions = counts.astype(np.float32) / np.where(totals > 0, totals, np.float32(1))
    for group in range(3):
        rows = fractions[codes == group]
        accumulator = np.zeros(counts.shape[1], dtype=np.float32)
        for row in rows:  # one cell after the other, in float32, as numpy reduces sctop's array
            accumulator += row
        expected = accumulator / np.float32(max(len(rows), 1))
        np.testing.assert_array_equal(means[group], expected)
        reference = rows.astype(np.float64).mean(axis=0) if len(rows) else np.zeros(counts.shape[1])
        np.testing.assert_allclose(exact[group], reference, rtol=1e-6)


@pytest.mark.shared_data
def test_baron_human_scores_match_sctop_package():
    adata = read_shared("baron_human_subset")
    is_ref = np.random.default_rng(0).random(adata.n_obs) < 0.7
    ref, query = adata[is_ref].copy(), adata[~is_ref].copy()
    types = sorted(ref.obs["cell_type"].astype(str).unique())
    basis = cr.tl.sctop_basis(ref, labels_key="cell_type", min_cells=1)[types]
    expected_basis = sctop_package_basis(ref, types)
    np.testing.assert_allclose(basis.to_numpy(), expected_basis.to_numpy(), atol=1e-7)

    scores = cr.tl.sctop_score(query, basis, inplace=False)
    processed = sctop.process(genes_by_cells(query))
    expected = sctop.score(expected_basis, processed).to_numpy().T
    # sctop normalizes each cell with a float32 norm summed gene by gene over 20k genes: its
    # vectors are off unit length by up to ~4e-5. With that norm redone in float64, the
    # remaining difference is the float32 arithmetic of sctop.score.
    renormalized = processed / np.linalg.norm(processed.to_numpy(np.float64), axis=0)
    np.testing.assert_allclose(scores, sctop.score(expected_basis, renormalized).to_numpy().T, atol=1e-5)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    np.testing.assert_array_equal(scores.to_numpy().argmax(axis=1), expected.argmax(axis=1))
    # and against an all-float64 reference built from sctop's own processed values
    shared = np.intersect1d(expected_basis.index, processed.index)
    exact, *_ = np.linalg.lstsq(
        expected_basis.loc[shared].to_numpy(np.float64),
        renormalized.loc[shared].to_numpy(np.float64),
        rcond=None,
    )
    np.testing.assert_allclose(scores, exact.T, atol=1e-6)
