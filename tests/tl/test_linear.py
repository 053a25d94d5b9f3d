import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, special, stats
from sklearn.feature_selection import f_classif
from tests.conftest import as_format, make_adata, synthetic_counts

import cellrep as cr

N_GENES, N_COMPS = 20, 5
# the numpy/sklearn/scanpy references divide by zero on the all-zero genes of the synthetic data
pytestmark = [
    pytest.mark.filterwarnings("ignore:Features .* are constant"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def _normalized_reference(counts: np.ndarray, normalization: str) -> np.ndarray:
    """Plain numpy / scipy / scanpy versions of the three normalizations (all genes)."""
    if normalization == "log":
        return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    if normalization == "rank_probit":
        probit = special.ndtri(stats.rankdata(counts, axis=1) / (counts.shape[1] + 1))
        return probit / np.linalg.norm(probit, axis=1, keepdims=True)
    import scanpy as sc

    return sc.experimental.pp.normalize_pearson_residuals(
        ad.AnnData(counts.copy()), theta=100, inplace=False
    )["X"]


def _reference_embedding(counts: np.ndarray, labels, normalization: str, whiten: bool = True):
    """ANOVA on log values (sklearn) → chosen normalization → z-score (ddof=1) → exact SVD."""
    scores, _ = f_classif(_normalized_reference(counts, "log"), labels)
    genes = np.sort(np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:N_GENES])
    values = _normalized_reference(counts, normalization)[:, genes]
    std = values.std(axis=0, ddof=1)
    standardized = (values - values.mean(axis=0)) / np.where(std > 0, std, 1)
    _, _, right = np.linalg.svd(standardized, full_matrices=False)
    embedding = standardized @ right[:N_COMPS].T
    return genes, embedding / embedding.std(axis=0, ddof=1) if whiten else embedding


def _assert_same_up_to_sign(actual: np.ndarray, expected: np.ndarray, rtol=1e-4, atol=1e-4):
    signs = np.sign(np.sum(actual * expected, axis=0))
    np.testing.assert_allclose(actual * signs, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("normalization", ["log", "rank_probit", "pearson"])
def test_embedding_matches_numpy_reference(counts_adata, normalization):
    counts = _dense(counts_adata.X)
    labels = counts_adata.obs["cell_type"].to_numpy()
    cr.tl.linear_embedding(
        counts_adata, labels_key="cell_type", normalization=normalization, n_genes=N_GENES, n_comps=N_COMPS
    )
    genes, expected = _reference_embedding(counts, labels, normalization)
    fitted = counts_adata.uns["linear"]
    np.testing.assert_array_equal(fitted["genes"], counts_adata.var_names[genes])
    assert counts_adata.obsm["X_linear"].shape == (counts_adata.n_obs, N_COMPS)
    _assert_same_up_to_sign(counts_adata.obsm["X_linear"], expected, rtol=1e-3, atol=1e-3)
    assert fitted["params"]["normalization"] == normalization


def test_unwhitened_scores_and_custom_key(counts_adata):
    cr.tl.linear_embedding(
        counts_adata,
        labels_key="cell_type",
        n_genes=N_GENES,
        n_comps=N_COMPS,
        whiten=False,
        key_added="X_lin2",
    )
    _, expected = _reference_embedding(
        _dense(counts_adata.X), counts_adata.obs["cell_type"].to_numpy(), "log", whiten=False
    )
    _assert_same_up_to_sign(counts_adata.obsm["X_lin2"], expected, rtol=1e-3, atol=1e-3)
    assert "X_lin2" in counts_adata.uns
    assert "linear" not in counts_adata.uns


@pytest.mark.parametrize("normalization", ["log", "rank_probit", "pearson"])
@pytest.mark.parametrize("standardize", ["query", "reference"])
def test_project_of_reference_reproduces_embedding(counts_adata, normalization, standardize):
    cr.tl.linear_embedding(
        counts_adata, labels_key="cell_type", normalization=normalization, n_genes=N_GENES, n_comps=N_COMPS
    )
    query = counts_adata.copy()
    del query.obsm["X_linear"]
    cr.tl.project(query, counts_adata, standardize=standardize)
    np.testing.assert_allclose(query.obsm["X_linear"], counts_adata.obsm["X_linear"], rtol=1e-5, atol=1e-5)
    assert query.uns["linear_projection"]["n_shared_genes"] == N_GENES


@pytest.mark.parametrize("normalization", ["log", "rank_probit", "pearson"])
def test_project_ignores_gene_order_and_extra_genes(normalization):
    ref = make_adata(as_format(synthetic_counts(80, 40, seed=1), "csr", np.float32))
    cr.tl.linear_embedding(
        ref, labels_key="cell_type", normalization=normalization, n_genes=N_GENES, n_comps=N_COMPS
    )
    order = np.random.default_rng(0).permutation(ref.n_vars)
    shuffled = ref[:, order].copy()
    cr.tl.project(shuffled, ref)
    np.testing.assert_allclose(shuffled.obsm["X_linear"], ref.obsm["X_linear"], rtol=1e-5, atol=1e-5)


def test_missing_genes_are_filled_with_the_reference_mean():
    ref = make_adata(as_format(synthetic_counts(80, 40, seed=2), "csc", np.float64))
    cr.tl.linear_embedding(
        ref,
        labels_key="cell_type",
        normalization="rank_probit",
        n_genes=N_GENES,
        n_comps=N_COMPS,
        whiten=False,
    )
    fitted = ref.uns["linear"]
    missing = fitted["genes"][:3]
    query = ref[:, ~ref.var_names.isin(missing)].copy()
    cr.tl.project(query, ref, standardize="reference")
    values = _normalized_reference(_dense(query.X), "rank_probit")
    kept = pd.Index(fitted["genes"]).isin(query.var_names)
    columns = query.var_names.get_indexer(fitted["genes"][kept])
    standardized = (values[:, columns] - fitted["means"][kept]) / fitted["scales"][kept]
    expected = standardized @ fitted["components"][kept]
    np.testing.assert_allclose(query.obsm["X_linear"], expected, rtol=1e-4, atol=1e-5)


def test_query_standardization_uses_query_statistics():
    ref = make_adata(as_format(synthetic_counts(90, 40, seed=3), "dense", np.int64))
    cr.tl.linear_embedding(ref, labels_key="cell_type", n_genes=N_GENES, n_comps=N_COMPS, whiten=False)
    fitted = ref.uns["linear"]
    query = ref[:30].copy()
    cr.tl.project(query, ref, standardize="query")
    values = _normalized_reference(_dense(query.X), "log")[:, ref.var_names.get_indexer(fitted["genes"])]
    std = values.std(axis=0, ddof=1)
    standardized = (values - values.mean(axis=0)) / np.where(std > 0, std, 1)
    np.testing.assert_allclose(
        query.obsm["X_linear"], standardized @ fitted["components"], rtol=1e-4, atol=1e-5
    )


def test_clipped_embedding_matches_numpy_reference(counts_adata):
    cr.tl.linear_embedding(
        counts_adata, labels_key="cell_type", n_genes=N_GENES, n_comps=N_COMPS, whiten=False, max_value=1.0
    )
    fitted = counts_adata.uns["linear"]
    values = _normalized_reference(_dense(counts_adata.X), "log")[
        :, counts_adata.var_names.get_indexer(fitted["genes"])
    ]
    std = values.std(axis=0, ddof=1)
    clipped = np.clip((values - values.mean(axis=0)) / np.where(std > 0, std, 1), -1.0, 1.0)
    assert (np.abs(clipped) == 1.0).any()
    _, _, right = np.linalg.svd(clipped, full_matrices=False)  # no re-centring after clipping
    _assert_same_up_to_sign(counts_adata.obsm["X_linear"], clipped @ right[:N_COMPS].T, rtol=1e-3, atol=1e-3)
    for standardize in ("query", "reference"):
        query = counts_adata[:, ::-1].copy()
        cr.tl.project(query, counts_adata, standardize=standardize)
        np.testing.assert_allclose(
            query.obsm["X_linear"], counts_adata.obsm["X_linear"], rtol=1e-5, atol=1e-5
        )


def test_hvg_selection_without_labels():
    ref = make_adata(as_format(synthetic_counts(80, 40, seed=4), "csr", np.float32))
    cr.tl.linear_embedding(ref, n_genes=15, n_comps=4)
    assert len(ref.uns["linear"]["genes"]) == 15
    assert ref.obsm["X_linear"].shape == (80, 4)


def test_bad_labels_warn_and_are_ignored_for_selection():
    ref = make_adata(as_format(synthetic_counts(80, 40, seed=5), "csr", np.float32))
    labels = ref.obs["cell_type"].astype(object)
    labels.iloc[:5] = np.nan
    labels.iloc[5] = "singleton"
    ref.obs["cell_type"] = labels.astype("category")
    with pytest.warns(UserWarning, match="missing"), pytest.warns(UserWarning, match="fewer than 2"):
        cr.tl.linear_embedding(ref, labels_key="cell_type", n_genes=N_GENES, n_comps=N_COMPS)
    assert np.isfinite(ref.obsm["X_linear"]).all()
    assert ref.obsm["X_linear"].shape[0] == 80


def test_errors_leave_the_data_untouched():
    ref = make_adata(as_format(synthetic_counts(60, 30), "csr", np.float32))
    with pytest.raises(ValueError, match="labels_key 'nope'"):
        cr.tl.linear_embedding(ref, labels_key="nope")
    with pytest.raises(ValueError, match="normalization"):
        cr.tl.linear_embedding(ref, normalization="tpm")
    with pytest.raises(ValueError, match="needs labels_key"):
        cr.tl.linear_embedding(ref, gene_selection="anova")
    with pytest.raises(ValueError, match="gene_selection"):
        cr.tl.linear_embedding(ref, labels_key="cell_type", gene_selection="random")
    logged = ref.copy()
    logged.X.data = np.log1p(logged.X.data) + 0.5
    with pytest.raises(ValueError, match="non-integer"):
        cr.tl.linear_embedding(logged, labels_key="cell_type")
    assert "X_linear" not in logged.obsm
    assert "linear" not in logged.uns
    with pytest.raises(ValueError, match="no fitted transform"):
        cr.tl.project(ref.copy(), ref)

    cr.tl.linear_embedding(ref, labels_key="cell_type", n_genes=N_GENES, n_comps=N_COMPS)
    renamed = ref.copy()
    renamed.var_names = [f"other{j}" for j in range(ref.n_vars)]
    with pytest.raises(ValueError, match="Only 0 of"):
        cr.tl.project(renamed, ref)
    with pytest.raises(ValueError, match="at least"):
        cr.tl.project(ref[:, ref.uns["linear"]["genes"][:5]].copy(), ref)
    with pytest.raises(ValueError, match="standardize"):
        cr.tl.project(ref.copy(), ref, standardize="batch")
