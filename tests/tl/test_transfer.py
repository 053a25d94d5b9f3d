import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from tests.conftest import as_format

import cellrep as cr
from cellrep.tl._classifiers import LocalLogisticRegression
from cellrep.tl._novelty import reference_pvalues
from cellrep.tl._transfer import DEFAULT_C, DEFAULT_UNKNOWN_THRESHOLD

N_TYPES = 3


def typed_counts(
    n_cells: int = 90,
    n_genes: int = 40,
    *,
    seed: int = 0,
    matrix_format="csr",
    dtype=np.float32,
    n_types: int = N_TYPES,
):
    """Counts where each type (three by default) over-expresses its own block of 5 marker genes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_cells) % n_types
    rates = rng.gamma(1.0, 1.0, size=n_genes)[None, :] * np.ones((n_cells, 1))
    for cell_type in range(n_types):
        rates[labels == cell_type, cell_type * 5 : cell_type * 5 + 5] += 6.0
    counts = rng.poisson(rates)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{k}" for k in labels])},
        index=[f"c{seed}_{i}" for i in range(n_cells)],
    )
    return ad.AnnData(
        as_format(counts, matrix_format, dtype),
        obs=obs,
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )


@pytest.fixture
def ref_query(matrix_format, dtype):
    return typed_counts(seed=0, matrix_format=matrix_format, dtype=dtype), typed_counts(
        60, seed=1, matrix_format=matrix_format, dtype=dtype
    )


def _macro_f1(query, key="cell_type"):
    """Macro-F1 over the true classes (as the benchmark scores): 'unknown' calls count as misses."""
    truth = query.obs["cell_type"].astype(str)
    return f1_score(truth, query.obs[f"{key}_pred"].astype(str), labels=np.unique(truth), average="macro")


@pytest.mark.parametrize("method", ["logreg", "knn", "centroid", "local_logreg"])
def test_end_to_end_transfer_from_counts(ref_query, method):
    ref, query = ref_query
    truth = query.obs["cell_type"].copy()
    cr.tl.transfer_labels(
        ref, query, labels_key="cell_type", method=method, linear_kwargs={"n_genes": 30, "n_comps": 10}
    )
    assert _macro_f1(query) > 0.9
    proba = query.obsm["cell_type_proba"]
    classes = query.uns["cell_type_transfer"]["classes"]
    assert list(classes) == ["type0", "type1", "type2"]
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(query.obs["cell_type_confidence"], proba.max(axis=1), rtol=1e-6)
    certainty = query.obs["cell_type_certainty"].to_numpy()
    pvalues = query.obs["cell_type_reference_pvalue"].to_numpy()
    np.testing.assert_allclose(certainty, proba.max(axis=1) * pvalues**0.25, rtol=1e-6)
    threshold = DEFAULT_UNKNOWN_THRESHOLD if method == "logreg" else 0.0  # chosen for logreg only
    expected = np.where(certainty < threshold, "unknown", classes[proba.argmax(axis=1)])
    np.testing.assert_array_equal(query.obs["cell_type_pred"].astype(str), expected)
    pd.testing.assert_series_equal(query.obs["cell_type"], truth)
    assert "X_linear" in ref.obsm
    assert "X_linear" in query.obsm
    assert query.uns["cell_type_transfer"]["params"]["method"] == method


@pytest.mark.parametrize(
    ("method", "estimator"),
    [
        ("logreg", LogisticRegression(C=DEFAULT_C, class_weight="balanced", max_iter=1000, random_state=0)),
        ("knn", KNeighborsClassifier(n_neighbors=15, weights="distance")),
        ("centroid", NearestCentroid()),
    ],
)
def test_transfer_on_a_given_representation_matches_sklearn(method, estimator):
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], 100)
    ref = ad.AnnData(obs=pd.DataFrame({"cell_type": labels}, index=[f"r{i}" for i in range(100)]))
    ref.obsm["X_emb"] = rng.normal(size=(100, 4)) + pd.Categorical(labels).codes[:, None]
    query = ad.AnnData(obs=pd.DataFrame(index=[f"q{i}" for i in range(40)]))
    query.obsm["X_emb"] = rng.normal(size=(40, 4))
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method, use_rep="X_emb", key_added="ct")
    expected = estimator.fit(ref.obsm["X_emb"], ref.obs["cell_type"].astype(str)).predict_proba(
        query.obsm["X_emb"]
    )
    np.testing.assert_allclose(query.obsm["ct_proba"], expected, rtol=1e-4, atol=1e-6)
    assert query.obs["ct_pred"].dtype == "category"


def test_unknown_below_the_confidence_threshold():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    cr.tl.transfer_labels(
        ref,
        query,
        labels_key="cell_type",
        unknown_threshold=0.999,
        linear_kwargs={"n_genes": 30, "n_comps": 10},
    )
    certainty = query.obs["cell_type_certainty"].to_numpy()
    predicted = query.obs["cell_type_pred"].astype(str).to_numpy()
    assert (certainty < 0.999).any()
    np.testing.assert_array_equal(predicted == "unknown", certainty < 0.999)
    with pytest.raises(ValueError, match="unknown_threshold"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", unknown_threshold=2)


def test_query_with_shuffled_genes_gets_the_same_predictions():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    shuffled = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    cr.tl.transfer_labels(ref, shuffled, labels_key="cell_type")
    np.testing.assert_allclose(
        shuffled.obsm["cell_type_proba"], query.obsm["cell_type_proba"], rtol=1e-5, atol=1e-6
    )


def test_existing_reference_transform_projects_the_query():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    cr.tl.linear_embedding(ref, labels_key="cell_type", n_genes=30, n_comps=10)
    # the classifier on a projected representation; the unknown call is tested on its own below
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", use_rep="X_linear", unknown_threshold=0)
    assert query.obsm["X_linear"].shape == (60, 10)
    assert _macro_f1(query) > 0.9
    with pytest.raises(ValueError, match="no 'X_other'"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", use_rep="X_other")


def test_bad_labels_warn_and_every_query_cell_is_predicted():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    labels = ref.obs["cell_type"].astype(object)
    labels.iloc[:4] = np.nan
    labels.iloc[4] = "singleton"
    ref.obs["cell_type"] = labels
    with pytest.warns(UserWarning, match="missing"), pytest.warns(UserWarning, match="fewer than 2"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    assert "singleton" not in query.uns["cell_type_transfer"]["classes"]
    assert query.obs["cell_type_pred"].notna().all()
    with pytest.raises(ValueError, match="labels_key 'nope'"):
        cr.tl.transfer_labels(ref, query, labels_key="nope")
    with pytest.raises(ValueError, match="method"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", method="svm")


def test_no_shared_genes_is_an_error_and_leaves_both_untouched():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    query.var_names = [f"mouse{j}" for j in range(query.n_vars)]
    with pytest.raises(ValueError, match="map_orthologs"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    assert list(ref.obsm) == []
    assert list(ref.uns) == []
    assert list(query.obsm) == []
    assert list(query.uns) == []
    assert list(query.obs.columns) == ["cell_type"]

    # an embedding computed before survives a failed call unchanged
    cr.tl.linear_embedding(ref, labels_key="cell_type", n_genes=30, n_comps=10)
    embedding, transform = ref.obsm["X_linear"], ref.uns["linear"]
    with pytest.raises(ValueError, match="map_orthologs"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    assert ref.obsm["X_linear"] is embedding
    assert ref.uns["linear"] is transform


def test_default_transfer_is_the_documented_pipeline(matrix_format, dtype):
    """Defaults = linear_embedding(DEFAULT_LINEAR_KWARGS) + project(reference statistics) + balanced LogisticRegression(C=0.05)."""
    from cellrep.tl._transfer import DEFAULT_LINEAR_KWARGS

    ref = typed_counts(seed=0, matrix_format=matrix_format, dtype=dtype)
    query = typed_counts(60, seed=1, matrix_format=matrix_format, dtype=dtype)
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", linear_kwargs={"n_genes": 30, "n_comps": 10})
    assert DEFAULT_LINEAR_KWARGS == {
        "normalization": "log",
        "gene_selection": "hvg",
        "whiten": False,
        "max_value": 4.0,
    }

    expected_ref, expected_query = ref.copy(), query.copy()
    cr.tl.linear_embedding(
        expected_ref, labels_key="cell_type", n_genes=30, n_comps=10, **DEFAULT_LINEAR_KWARGS
    )
    cr.tl.project(expected_query, expected_ref, standardize="reference")
    np.testing.assert_allclose(query.obsm["X_linear"], expected_query.obsm["X_linear"], rtol=1e-5, atol=1e-5)
    model = LogisticRegression(C=0.05, class_weight="balanced", max_iter=1000, random_state=0)
    model.fit(expected_ref.obsm["X_linear"], ref.obs["cell_type"].astype(str))
    np.testing.assert_allclose(
        query.obsm["cell_type_proba"], model.predict_proba(expected_query.obsm["X_linear"]), atol=1e-5
    )


def test_held_out_novel_type_is_called_unknown():
    """A type missing from the reference gets low certainty; the default threshold calls part of it 'unknown'."""
    cells = typed_counts(400, seed=0, n_types=4)
    first_half = np.arange(cells.n_obs) < 200
    ref = cells[first_half & (cells.obs["cell_type"] != "type3").to_numpy()].copy()
    query = cells[~first_half].copy()
    cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    novel = query.obs["cell_type"].to_numpy() == "type3"
    predicted = query.obs["cell_type_pred"].astype(str).to_numpy()
    called_unknown = predicted == "unknown"
    certainty = query.obs["cell_type_certainty"].to_numpy()
    np.testing.assert_array_equal(called_unknown, certainty < DEFAULT_UNKNOWN_THRESHOLD)
    assert "unknown" in query.obs["cell_type_pred"].cat.categories
    assert called_unknown[novel].mean() >= 0.2  # 11 of 50 on this data
    assert not called_unknown[~novel].any()  # 0 of 150
    assert np.median(certainty[novel]) < np.median(certainty[~novel])
    confident_known = ~novel & ~called_unknown
    np.testing.assert_array_equal(
        predicted[confident_known], query.obs["cell_type"].astype(str).to_numpy()[confident_known]
    )
    # a stricter threshold trades known cells for novel ones
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", unknown_threshold=0.6)
    stricter = query.obs["cell_type_pred"].astype(str).to_numpy() == "unknown"
    assert stricter[novel].mean() >= 0.75  # 40 of 50
    assert stricter[~novel].mean() <= 0.2  # 22 of 150


def test_local_logreg_falls_back_to_the_global_model():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.vstack([centre + rng.normal(size=(40, 2)) for centre in centres])
    y = np.repeat(["a", "b", "c"], 40)
    y[:20] = "b"  # the first cluster mixes two classes: it gets its own model
    query = np.vstack([centre + rng.normal(size=(10, 2)) for centre in centres])

    # no cluster is large enough: everything comes from the global model
    everything_global = LocalLogisticRegression(
        LogisticRegression(max_iter=1000), min_cluster_size=10**6
    ).fit(X, y)
    assert everything_global.local_models_ == {}
    np.testing.assert_allclose(
        everything_global.predict_proba(query), everything_global.global_model_.predict_proba(query)
    )

    local = LocalLogisticRegression(
        LogisticRegression(max_iter=1000), min_cluster_size=15, resolution=0.1
    ).fit(X, y)
    clusters = local.assign_clusters(query)
    proba = local.predict_proba(query)
    assert proba.shape == (30, 3)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    for cluster in np.unique(clusters):
        members = clusters == cluster
        model = local.local_models_.get(cluster)
        if model is None:
            np.testing.assert_allclose(proba[members], local.global_model_.predict_proba(query[members]))
        elif isinstance(model, str):  # a single-class cluster predicts its class
            assert set(local.predict(query[members])) == {model}


def test_sctop_method_scores_counts():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    try:
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", method="sctop")
    except NotImplementedError:
        pytest.skip("cr.tl.sctop_basis is not implemented yet")
    assert _macro_f1(query) > 0.9
    np.testing.assert_allclose(query.obsm["cell_type_proba"].sum(axis=1), 1, rtol=1e-5)


def test_default_transfer_on_pbmc68k_reduced_counts():
    adata = cr.datasets.pbmc68k_reduced_counts()
    is_ref = np.arange(adata.n_obs) % 5 != 0
    ref, query = adata[is_ref].copy(), adata[~is_ref].copy()
    cr.tl.transfer_labels(ref, query, labels_key="bulk_labels")
    assert (
        f1_score(query.obs["bulk_labels"], query.obs["bulk_labels_pred"].astype(str), average="macro") > 0.6
    )
    assert sparse.issparse(query.X)


def _small_panel_query(n_ref_genes: int = 2500, n_panel: int = 220):
    """A reference on ``n_ref_genes`` genes and a query measured on a panel of ``n_panel`` of them plus its own genes."""
    ref = typed_counts(150, n_ref_genes, seed=0)
    full_query = typed_counts(60, n_ref_genes, seed=1)
    rng = np.random.default_rng(2)
    panel = np.concatenate([np.arange(15), 15 + rng.choice(n_ref_genes - 15, n_panel - 15, replace=False)])
    query = full_query[:, np.sort(panel)].copy()
    extra = ad.AnnData(
        sparse.csr_matrix(rng.poisson(1.0, (60, 30)).astype(np.float32)),
        obs=query.obs[[]],
        var=pd.DataFrame(index=[f"query_only{j}" for j in range(30)]),
    )
    query = ad.concat([query, extra], axis=1, merge="first")
    query.obs["cell_type"] = full_query.obs["cell_type"].to_numpy()
    return ref, query


def test_small_gene_panel_query_uses_only_shared_genes():
    """Issue 10: a query sharing ~10 % of the reference's HVGs runs with the defaults, on shared genes only."""
    ref, query = _small_panel_query()
    hvg_only = ref.copy()
    cr.tl.linear_embedding(hvg_only, gene_selection="hvg")
    reference_hvgs = np.asarray(hvg_only.uns["linear"]["genes"])
    overlap = np.isin(reference_hvgs, query.var_names).mean()
    assert 0.07 < overlap < 0.13  # ~10 % of the reference's 2000 HVGs are in the query panel
    with pytest.raises(ValueError, match="reference genes are present"):
        cr.tl.project(query, hvg_only)  # project keeps its rule: the query was unknown at fit time

    cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    stored = query.uns["cell_type_transfer"]
    shared = np.intersect1d(ref.var_names, query.var_names)
    np.testing.assert_array_equal(np.sort(stored["shared_genes"].astype(str)), shared)
    assert set(stored["genes"]) <= set(shared)
    np.testing.assert_array_equal(stored["genes"], ref.uns["linear"]["genes"])
    # fewer shared genes than n_genes=2000: all with a dispersion are used (2 are nearly constant)
    assert len(stored["genes"]) >= shared.size - 5
    assert _macro_f1(query) > 0.9


def test_sctop_follows_the_same_overlap_rule():
    """One rule for every method: sctop records the shared genes, warns and refuses as logreg does."""
    ref, query = _small_panel_query()
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", method="sctop")
    stored = query.uns["cell_type_transfer"]
    np.testing.assert_array_equal(stored["genes"], stored["shared_genes"])
    np.testing.assert_array_equal(
        np.sort(stored["genes"].astype(str)), np.intersect1d(ref.var_names, query.var_names)
    )
    assert _macro_f1(query) > 0.9

    # 9 of 200 genes shared: too few for any method, the same error
    ref, query = typed_counts(seed=0, n_genes=200), typed_counts(60, seed=1, n_genes=200)
    query.var_names = [name if j < 9 else f"other{j}" for j, name in enumerate(query.var_names)]
    for method in ("sctop", "logreg", "knn"):
        with pytest.raises(ValueError, match=r"Only 9 genes are shared.*at least 20"):
            cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method)
    assert "cell_type_transfer" not in query.uns

    # 60 of 200 shared: usable, with the same warning for every method
    query.var_names = [f"g{j}" if j < 60 else f"other{j}" for j in range(200)]
    for method in ("sctop", "logreg"):
        with pytest.warns(
            UserWarning,
            match=r"Only 60 genes are shared by the reference \(200 genes\) and the query \(200 genes\), 30%",
        ):
            cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method)
        assert len(query.uns["cell_type_transfer"]["shared_genes"]) == 60


@pytest.mark.parametrize("method", ["logreg", "centroid", "sctop"])
def test_empty_query_is_a_clear_error(method):
    """An empty query gets cellrep's own ValueError, not one from sklearn's LogisticRegression."""
    ref = typed_counts(seed=0)
    query = typed_counts(seed=1)[:0].copy()
    with pytest.raises(ValueError, match="The query has no cells"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method)
    assert "cell_type_pred" not in query.obs


def test_reference_pvalues_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    reference, query = rng.normal(size=(60, 3)), rng.normal(size=(120, 3)) * 1.5
    distances = np.linalg.norm(reference[:, None] - reference[None], axis=2)
    np.fill_diagonal(distances, np.inf)  # leave-one-out
    calibration = np.sort(distances, axis=1)[:, :5].mean(axis=1)
    scores = np.sort(np.linalg.norm(query[:, None] - reference[None], axis=2), axis=1)[:, :5].mean(axis=1)
    # each side relative to its own median distance (a shifted query as a whole is not novel)
    calibration, scores = calibration / np.median(calibration), scores / np.median(scores)
    expected = ((calibration[None] >= scores[:, None]).sum(axis=1) + 1) / (calibration.size + 1)
    np.testing.assert_allclose(reference_pvalues(reference, query, n_neighbors=5), expected)


def test_reference_pvalues_are_uniform_for_reference_like_cells_and_tiny_for_outliers():
    from scipy import stats

    rng = np.random.default_rng(1)
    reference, like = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
    pvalues = reference_pvalues(reference, like)
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    shifted = reference_pvalues(reference, like + 0.5)  # another batch: the whole query moved
    assert 0.45 < np.median(shifted) < 0.55
    outliers = np.vstack([like[:1900], rng.normal(size=(100, 5)) + 10])  # 5 % of the query far away
    pvalues = reference_pvalues(reference, outliers)
    np.testing.assert_allclose(pvalues[1900:], 1 / 2001)
    assert np.median(pvalues[:1900]) > 0.4


def test_a_reference_class_named_unknown_is_refused_before_anything_is_written():
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    ref.obs["cell_type"] = ref.obs["cell_type"].cat.rename_categories({"type2": "unknown"})
    ref_before, query_before = ref.copy(), query.copy()
    with pytest.raises(ValueError, match=r"named 'unknown'.*unknown_threshold=0"):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    for after, before in ((ref, ref_before), (query, query_before)):
        assert list(after.obsm) == list(before.obsm)
        assert list(after.uns) == list(before.uns)
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", unknown_threshold=0)
    assert "unknown" in set(query.obs["cell_type_pred"].astype(str))


def test_knn_with_fewer_reference_cells_than_neighbours():
    ref, query = typed_counts(9, seed=0), typed_counts(30, seed=1)
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", method="knn", linear_kwargs={"n_comps": 5})
    assert query.obs["cell_type_pred"].notna().all()


@pytest.mark.parametrize("method", ["sctop", "knn", "centroid", "local_logreg"])
def test_default_unknown_call_is_for_logreg_only(method):
    ref, query = typed_counts(seed=0), typed_counts(60, seed=1)
    cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method)
    assert "unknown" not in query.obs["cell_type_pred"].cat.categories
    assert query.uns["cell_type_transfer"]["params"]["unknown_threshold"] == 0


def test_a_small_query_is_compared_on_the_reference_scale():
    """One query cell cannot be its own median: far from the reference it gets p = 1/(n+1), inside it p is large."""
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(500, 4))
    np.testing.assert_allclose(reference_pvalues(reference, np.full((1, 4), 20.0)), 1 / 501)
    assert reference_pvalues(reference, np.zeros((1, 4)))[0] > 0.5


@pytest.mark.parametrize("method", ["logreg", "knn", "sctop"])
def test_a_query_panel_inside_the_reference_warns_when_it_has_few_genes(method):
    """USERTEST3: 80 query genes, all in the reference, are 100 % of the smaller panel but too few: one warning."""
    adata = cr.datasets.pbmc68k_reduced_counts()
    is_ref = np.arange(adata.n_obs) % 5 != 0
    ref, query = adata[is_ref].copy(), adata[~is_ref].copy()
    genes = np.random.default_rng(0).choice(adata.var_names, 80, replace=False)
    small_panel = query[:, genes].copy()
    with pytest.warns(
        UserWarning,
        match=r"Only 80 genes are shared by the reference \(765 genes\) and the query \(80 genes\), "
        r"100% of the smaller panel \(a transfer is reliable from 200 shared genes",
    ):
        cr.tl.transfer_labels(ref, small_panel, labels_key="bulk_labels", method=method)
    assert len(small_panel.uns["bulk_labels_transfer"]["shared_genes"]) == 80
    # 300 genes, all in the reference: no overlap warning
    wide_panel = query[:, adata.var_names[:300]].copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Only .* genes are shared", category=UserWarning)
        cr.tl.transfer_labels(ref, wide_panel, labels_key="bulk_labels", method=method)
    if method == "logreg":
        # what the warning is about: with 80 genes 20 % of these known cells are called unknown, with 300 8 %
        for panel, expected in ((small_panel, 0.2), (wide_panel, 0.08)):
            unknown = (panel.obs["bulk_labels_pred"] == "unknown").mean()
            assert unknown == pytest.approx(expected, abs=0.03)
