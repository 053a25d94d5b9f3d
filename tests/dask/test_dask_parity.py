"""Every dask-capable function of cr.pp and the linear cr.tl equals its in-memory result.

Each test runs the same call on an in-memory AnnData and on one whose data is a dask array
(chunks of cells, CSR or dense chunks) and compares to 1e-6 relative (to the largest value).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts

import cellrep as cr

da = pytest.importorskip("dask.array")

CHUNK_KINDS = ("csr_matrix", "csr_array", "dense")
CHUNK_ROWS = 70
RTOL = 1e-6


def in_memory(matrix, kind: str):
    if kind == "dense":
        return np.asarray(matrix)
    return getattr(sparse, kind)(matrix)


def to_dask(matrix, chunk_rows: int = CHUNK_ROWS):
    return da.from_array(matrix, chunks=(chunk_rows, -1), asarray=False)


def dense(values) -> np.ndarray:
    if hasattr(values, "compute"):
        values = values.compute()
    if hasattr(values, "toarray"):
        values = values.toarray()
    return np.asarray(values, dtype=np.float64)


def assert_same(expected, actual, rtol: float = RTOL) -> None:
    expected, actual = dense(expected), dense(actual)
    scale = np.nanmax(np.abs(expected)) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(params=CHUNK_KINDS)
def kind(request) -> str:
    return request.param


def pair(kind: str, *, n_cells: int = 300, n_genes: int = 80, seed: int = 0, dtype=np.float64):
    """The same counts as an in-memory AnnData and as a dask-backed one."""
    counts = synthetic_counts(n_cells, n_genes, seed=seed).astype(dtype)
    matrix = in_memory(counts, kind)
    return make_adata(matrix), make_adata(to_dask(matrix))


def test_normalize_total(kind):
    expected, lazy = pair(kind)
    cr.pp.normalize_total(expected, key_added="size_factor")
    cr.pp.normalize_total(lazy, key_added="size_factor")
    assert isinstance(lazy.X, da.Array)
    assert_same(expected.X, lazy.X)
    assert_same(expected.obs["size_factor"], lazy.obs["size_factor"])
    assert lazy.uns["normalize_total"]["params"]["target_sum"] == pytest.approx(
        expected.uns["normalize_total"]["params"]["target_sum"], rel=1e-12
    )


@pytest.mark.parametrize("base", [None, 2])
def test_log1p_and_log_normalize(kind, base):
    expected, lazy = pair(kind)
    cr.pp.log_normalize(expected, base=base)
    cr.pp.log_normalize(lazy, base=base)
    assert isinstance(lazy.X, da.Array)
    assert_same(expected.X, lazy.X)
    for adata in (expected, lazy):
        del adata.uns["log1p"]
        cr.pp.log1p(adata, base=base)
    assert_same(expected.X, lazy.X)


@pytest.mark.parametrize("zero_center", [True, False])
def test_scale(kind, zero_center):
    expected, lazy = pair(kind)
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
        cr.pp.scale(adata, zero_center=zero_center)
    assert_same(expected.X, lazy.X)
    np.testing.assert_allclose(lazy.var["mean"], expected.var["mean"], rtol=RTOL)
    np.testing.assert_allclose(lazy.var["std"], expected.var["std"], rtol=RTOL)
    assert lazy.uns["scale"]["params"] == expected.uns["scale"]["params"]


def test_rank_probit(kind):
    expected, lazy = pair(kind)
    cr.pp.rank_probit(expected, dtype=np.float64)
    cr.pp.rank_probit(lazy, dtype=np.float64)
    assert isinstance(lazy.layers["rank_probit"], da.Array)
    assert_same(expected.layers["rank_probit"], lazy.layers["rank_probit"])
    assert_same(expected.obs["rank_probit_offset"], lazy.obs["rank_probit_offset"])
    assert_same(cr.pp.get_rank_probit(expected).toarray(), cr.pp.get_rank_probit(lazy).toarray())


def test_pearson_residuals_implicit_and_dense(kind):
    expected, lazy = pair(kind)
    cr.pp.pearson_residuals(expected, dense=False)
    cr.pp.pearson_residuals(lazy, dense=False)
    for key in ("pearson_residuals_cell_total",):
        assert_same(expected.obs[key], lazy.obs[key])
    assert_same(expected.var["pearson_residuals_gene_total"], lazy.var["pearson_residuals_gene_total"])
    assert_same(cr.pp.get_pearson_residuals(expected).toarray(), cr.pp.get_pearson_residuals(lazy).toarray())
    dense_expected = cr.pp.pearson_residuals(expected, dense=True, inplace=False)
    dense_lazy = cr.pp.pearson_residuals(lazy, dense=True, inplace=False)
    assert isinstance(dense_lazy, da.Array)
    assert_same(dense_expected, dense_lazy)


def test_select_genes_anova(kind):
    expected, lazy = pair(kind)
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, method="anova", labels_key="cell_type", n_top=20)
    scores = expected.var["anova_score"].to_numpy()
    finite = np.isfinite(scores)
    np.testing.assert_allclose(lazy.var["anova_score"].to_numpy()[finite], scores[finite], rtol=RTOL)
    assert (lazy.var["selected"] == expected.var["selected"]).all()


@pytest.mark.parametrize(
    ("flavor", "batch_key"),
    [
        ("seurat", None),
        ("cell_ranger", None),
        ("seurat_v3", None),
        ("seurat_v3", "cell_type"),
        ("seurat", "cell_type"),
    ],
)
def test_select_genes_hvg(kind, flavor, batch_key):
    expected, lazy = pair(kind, n_cells=400, n_genes=120)
    if flavor not in ("seurat_v3",):
        for adata in (expected, lazy):
            cr.pp.log_normalize(adata)
    tables = [
        cr.pp.select_genes(adata, method="hvg", flavor=flavor, batch_key=batch_key, n_top=30, inplace=False)
        for adata in (expected, lazy)
    ]
    for column in tables[0].columns:
        left, right = tables[0][column], tables[1][column]
        if pd.api.types.is_float_dtype(left):
            np.testing.assert_allclose(right.to_numpy(), left.to_numpy(), rtol=RTOL, atol=1e-12)
        else:
            assert (left.astype(str) == right.astype(str)).all(), column


@pytest.mark.parametrize("solver", ["auto", "krylov", "covariance_krylov", "covariance_eigh"])
@pytest.mark.parametrize(
    "options", [{}, {"standardize": True}, {"zero_center": False}, {"whiten": True}], ids=str
)
def test_pca(kind, options, solver):
    """Both dask solvers; at this size the in-memory Krylov space is the whole gene space (exact)."""
    expected, lazy = pair(kind, n_cells=400, n_genes=90)
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
    cr.tl.pca(expected, n_comps=12, **options)
    cr.tl.pca(lazy, n_comps=12, solver=solver, **options)
    assert isinstance(lazy.obsm["X_pca"], da.Array)
    assert isinstance(lazy.varm["PCs"], np.ndarray)
    assert_same(expected.obsm["X_pca"], lazy.obsm["X_pca"])
    assert_same(expected.varm["PCs"], lazy.varm["PCs"])
    for key in ("variance", "variance_ratio"):
        np.testing.assert_allclose(lazy.uns["pca"][key], expected.uns["pca"][key], rtol=RTOL)


@pytest.mark.parametrize("solver", ["covariance_krylov", "covariance_eigh"])
def test_pca_gram_pass_over_merged_chunks(kind, solver):
    """30 chunks of 20 cells: the Gram pass merges consecutive chunks (a chunk's genes × genes
    partial outweighs it) and still gives the in-memory PCA."""
    from cellrep._array._dask_blocks import merged_row_chunks

    expected, lazy = pair(kind, n_cells=600, n_genes=90)
    lazy.X = lazy.X.rechunk((20, -1))
    assert len(merged_row_chunks(lazy.X, 8.0 * 90 * 90).array.chunks[0]) < 30
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
    cr.tl.pca(expected, n_comps=12)
    cr.tl.pca(lazy, n_comps=12, solver=solver)
    assert_same(expected.obsm["X_pca"], lazy.obsm["X_pca"])
    np.testing.assert_allclose(lazy.uns["pca"]["variance"], expected.uns["pca"]["variance"], rtol=RTOL)


def test_pca_of_implicit_matrices(kind):
    """Rank-probit deltas + offsets, implicit Pearson residuals and implicitly centred scaled data."""
    expected, lazy = pair(kind, n_cells=400, n_genes=90)
    for adata in (expected, lazy):
        cr.pp.rank_probit(adata, dtype=np.float64)
        cr.pp.pearson_residuals(adata, dense=False)
        for layer in ("rank_probit", "pearson_residuals"):
            cr.tl.pca(adata, layer=layer, n_comps=10, key_added=f"pca_{layer}")
        cr.pp.log_normalize(adata)
        cr.pp.scale(adata)
        cr.tl.pca(adata, n_comps=10, zero_center=False)
    for key in ("pca_rank_probit", "pca_pearson_residuals", "X_pca"):
        assert_same(expected.obsm[key], lazy.obsm[key])
        uns_key = "pca" if key == "X_pca" else key
        np.testing.assert_allclose(
            lazy.uns[uns_key]["variance"], expected.uns[uns_key]["variance"], rtol=RTOL
        )


@pytest.mark.parametrize(
    "options",
    [
        {"labels_key": "cell_type"},
        {"gene_selection": "hvg"},
        {"labels_key": "cell_type", "normalization": "rank_probit"},
        {"labels_key": "cell_type", "normalization": "pearson"},
        {"gene_selection": "hvg", "max_value": 4.0, "whiten": False},
    ],
    ids=str,
)
def test_linear_embedding_and_project(kind, options):
    expected, lazy = pair(kind, n_cells=360, n_genes=100)
    query_expected, query_lazy = pair(kind, n_cells=150, n_genes=100, seed=3)
    for ref, query in ((expected, query_expected), (lazy, query_lazy)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cr.tl.linear_embedding(ref, n_genes=40, n_comps=8, **options)
        for standardize in ("query", "reference"):
            cr.tl.project(query, ref, standardize=standardize, key_added=f"X_{standardize}")
    assert isinstance(lazy.obsm["X_linear"], da.Array)
    # rank-probit values and the clipped block are float32: equal to float32 rounding
    rtol = 1e-5 if options.get("normalization") == "rank_probit" or options.get("max_value") else RTOL
    assert_same(expected.obsm["X_linear"], lazy.obsm["X_linear"], rtol=rtol)
    for key in ("components", "means", "scales", "component_scales"):
        assert_same(expected.uns["linear"][key], lazy.uns["linear"][key], rtol=rtol)
    for standardize in ("query", "reference"):
        assert_same(query_expected.obsm[f"X_{standardize}"], query_lazy.obsm[f"X_{standardize}"], rtol=rtol)


@pytest.mark.parametrize("method", ["logreg", "centroid", "sctop"])
def test_transfer_labels(kind, method):
    """Float64 embedding (no clipping): the classifiers see the same coordinates to 1e-13."""
    expected, lazy = pair(kind, n_cells=300, n_genes=100)
    query_expected, query_lazy = pair(kind, n_cells=120, n_genes=100, seed=5)
    linear_kwargs = {"n_genes": 40, "max_value": None}
    for ref, query in ((expected, query_expected), (lazy, query_lazy)):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", method=method, linear_kwargs=linear_kwargs)
    assert_same(query_expected.obsm["cell_type_proba"], query_lazy.obsm["cell_type_proba"])
    assert (query_expected.obs["cell_type_pred"] == query_lazy.obs["cell_type_pred"]).all()


def test_transfer_labels_default_clipped_embedding(kind):
    """The default embedding clips to a float32 block, equal to float32 rounding (1e-5); the logistic
    regression, solved to sklearn's tolerance (1e-4), then agrees to that tolerance, not better."""
    expected, lazy = pair(kind, n_cells=300, n_genes=100)
    query_expected, query_lazy = pair(kind, n_cells=120, n_genes=100, seed=5)
    for ref, query in ((expected, query_expected), (lazy, query_lazy)):
        cr.tl.transfer_labels(ref, query, labels_key="cell_type", linear_kwargs={"n_genes": 40})
    assert_same(query_expected.obsm["X_linear"], query_lazy.obsm["X_linear"], rtol=1e-5)
    assert_same(query_expected.obsm["cell_type_proba"], query_lazy.obsm["cell_type_proba"], rtol=1e-3)
    assert (query_expected.obs["cell_type_pred"] == query_lazy.obs["cell_type_pred"]).all()


def test_sctop_score(kind):
    expected, lazy = pair(kind, n_cells=240, n_genes=100)
    cr.tl.sctop_basis(expected, labels_key="cell_type")
    scores = [cr.tl.sctop_score(query, expected, inplace=False) for query in (expected, lazy)]
    assert_same(scores[0].to_numpy(), scores[1].to_numpy())
    for query in (expected, lazy):
        cr.tl.sctop_score(query, expected)
    assert_same(expected.obsm["X_sctop"], lazy.obsm["X_sctop"])
    assert (lazy.obs["sctop_label"] == expected.obs["sctop_label"]).all()


@pytest.mark.parametrize("solver", ["auto", "krylov", "covariance_krylov"])
def test_pca_krylov_matches_in_memory_beyond_the_basis(kind, solver):
    """More genes than the Krylov basis holds: both dask Krylov solvers follow the same iteration."""
    expected, lazy = pair(kind, n_cells=500, n_genes=300)
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
    cr.tl.pca(expected, n_comps=5, n_threads=1)
    cr.tl.pca(lazy, n_comps=5, solver=solver)
    assert_same(expected.obsm["X_pca"], lazy.obsm["X_pca"])
    np.testing.assert_allclose(lazy.uns["pca"]["variance"], expected.uns["pca"]["variance"], rtol=RTOL)


def test_pca_solver_errors():
    _, lazy = pair("csr_matrix")
    with pytest.raises(ValueError, match="dask arrays"):
        cr.tl.pca(make_adata(lazy.X.compute()), n_comps=5, solver="covariance_eigh")
    cr.pp.rank_probit(lazy)
    for solver in ("covariance_eigh", "covariance_krylov"):
        with pytest.raises(ValueError, match="plain dask arrays"):
            cr.tl.pca(lazy, layer="rank_probit", n_comps=5, solver=solver)


def test_layout_errors_say_how_to_rechunk():
    counts = sparse.csr_matrix(synthetic_counts(200, 40).astype(np.float64))
    gene_chunked = make_adata(da.from_array(counts, chunks=(50, 20), asarray=False))
    with pytest.raises(TypeError, match=r"rechunk\(\{1: -1\}\)"):
        cr.pp.log_normalize(gene_chunked)
    csc_chunks = make_adata(da.from_array(counts.tocsc(), chunks=(50, -1), asarray=False))
    with pytest.raises(TypeError, match="map_blocks"):
        cr.tl.pca(csc_chunks, n_comps=5)


def test_bad_values_raise_when_the_chunk_is_computed():
    counts = synthetic_counts(200, 40).astype(np.float64)
    counts[150, 3] = -1.0
    adata = make_adata(to_dask(counts, 50))
    cr.pp.log_normalize(adata)  # lazy: nothing read yet
    with pytest.raises(ValueError, match="negative values"):
        adata.X.compute()


@pytest.mark.parametrize("solver", ["covariance_eigh", "covariance_krylov", "krylov"])
def test_uncentred_variance_on_float32(solver):
    """zero_center=False subtracts the squared mean score from the mean square: both must be exact in float64."""
    rng = np.random.default_rng(1)
    rates = rng.gamma(0.5, 1, 300)
    values = np.log1p(rng.poisson(rates, (400, 300)).astype(np.float64)).astype(np.float32)
    adata = make_adata(da.from_array(sparse.csr_matrix(values), chunks=(100, -1), asarray=False))
    cr.tl.pca(adata, n_comps=10, zero_center=False, solver=solver)
    # independent reference: exact SVD of the uncentred float64 data; variance of the scores (ddof=0)
    left, singular, _ = np.linalg.svd(values.astype(np.float64), full_matrices=False)
    expected = (left[:, :10] * singular[:10]).var(axis=0)
    np.testing.assert_allclose(np.asarray(adata.uns["pca"]["variance"]), expected, rtol=1e-6)


def test_a_chunk_is_normalized_and_summarized_in_one_task():
    """The gene selection's moments of lazily log-normalized counts run in the task that
    normalizes the chunk: no normalized chunk is held between tasks or moved between workers."""
    from dask.callbacks import Callback

    class TaskKeys(Callback):
        def __init__(self):
            super().__init__()
            self.keys = []

        def _pretask(self, key, dsk, state):
            self.keys.append(key[0] if isinstance(key, tuple) else key)

    _, adata = pair("csr_matrix")
    cr.pp.log_normalize(adata)
    with TaskKeys() as tasks:
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=20)
    ran = set(map(str, tasks.keys))
    assert not [key for key in ran if "normalize" in key], ran
    n_chunks = len(adata.X.chunks[0])
    assert sum(str(key).startswith("call_on_block") for key in tasks.keys) == n_chunks


def with_duplicate_entries(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """The same matrix with every row's first stored value split into two entries of its gene (legal CSR)."""
    data, indices, indptr = [], [], [0]
    for row in range(counts.shape[0]):
        values = counts.data[counts.indptr[row] : counts.indptr[row + 1]].astype(np.float64)
        genes = counts.indices[counts.indptr[row] : counts.indptr[row + 1]]
        if values.size:
            half = np.floor(values[0] / 2)
            values = np.concatenate([[values[0] - half], values[1:], [half]])
            genes = np.concatenate([genes, genes[:1]])
        data.append(values), indices.append(genes), indptr.append(indptr[-1] + values.size)
    return sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=counts.shape
    )


def test_chunks_with_duplicate_entries_give_the_summed_matrix():
    """As in memory, a CSR chunk's duplicate entries are summed before anything reads them
    (``log1p`` of the sum, not of its pieces)."""
    counts = sparse.csr_matrix(synthetic_counts(300, 80, seed=3))
    duplicated = with_duplicate_entries(counts)
    assert not duplicated.has_canonical_format
    expected, lazy = make_adata(counts.copy()), make_adata(to_dask(duplicated))
    for adata in (expected, lazy):
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=30)
        cr.tl.pca(adata, n_comps=8)
    assert_same(expected.X, lazy.X.compute())
    assert (expected.var["selected"] == lazy.var["selected"]).all()
    np.testing.assert_allclose(lazy.uns["pca"]["variance"], expected.uns["pca"]["variance"], rtol=RTOL)
