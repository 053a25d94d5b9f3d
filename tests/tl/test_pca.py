"""``cr.tl.pca`` and its array layer against sklearn's exact PCA, numpy and scanpy."""

from __future__ import annotations

import anndata as ad
import matplotlib
import numpy as np
import pytest
import scanpy as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import linalg, sparse, special, stats
from sklearn.decomposition import PCA
from tests.conftest import as_format, make_adata, read_shared, synthetic_counts

import cellrep as cr
from cellrep._array import _pca as pca_module
from cellrep._array import _pca_operator
from cellrep._array._offset import OffsetSparseMatrix
from cellrep._array._pca import _orthonormal_basis, block_width, pca_matrix, project_onto_pcs
from cellrep._array._pca_operator import build_operator, column_mean_var, sparse_dense_product
from cellrep._array._pearson import PearsonResidualMatrix

matplotlib.use("Agg")
N_COMPS = 8
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def dense64(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def tolerance(dtype) -> dict:
    return {"rtol": 2e-5, "atol": 2e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-9, "atol": 1e-9}


def standardized(values: np.ndarray) -> np.ndarray:
    """``(x − mean) / std`` (ddof=1, constant genes unscaled), as ``sc.pp.scale``."""
    std = values.std(axis=0, ddof=1)
    return (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)


def assert_matches_sklearn(
    adata, reference_values: np.ndarray, dtype, *, key: str = "pca", obsm: str = "X_pca"
):
    """Scores, loadings (same sign convention), variances and their ratios equal sklearn's exact PCA."""
    reference = PCA(N_COMPS, svd_solver="full").fit(reference_values)
    np.testing.assert_allclose(adata.uns[key]["variance"], reference.explained_variance_, **tolerance(dtype))
    np.testing.assert_allclose(
        adata.uns[key]["variance_ratio"], reference.explained_variance_ratio_, **tolerance(dtype)
    )
    loadings = adata.varm["PCs" if key == "pca" else key]
    assert np.degrees(linalg.subspace_angles(loadings, reference.components_.T)).max() < 1e-3
    np.testing.assert_allclose(loadings, reference.components_.T, **tolerance(dtype))
    np.testing.assert_allclose(adata.obsm[obsm], reference.transform(reference_values), **tolerance(dtype))


def test_matches_sklearn_on_every_format_and_dtype(counts_adata, dtype):
    values = dense64(counts_adata.X)
    original = counts_adata.X.copy()
    cr.tl.pca(counts_adata, n_comps=N_COMPS)
    assert_matches_sklearn(counts_adata, values, dtype)
    expected_dtype = np.float32 if dtype == np.float32 else np.float64
    assert counts_adata.obsm["X_pca"].dtype == expected_dtype
    assert counts_adata.varm["PCs"].shape == (counts_adata.n_vars, N_COMPS)
    np.testing.assert_array_equal(dense64(counts_adata.X), dense64(original))
    assert type(counts_adata.X) is type(original)


def test_standardize_matches_sklearn_on_scaled_data(counts_adata, dtype):
    values = standardized(dense64(counts_adata.X))
    cr.tl.pca(counts_adata, n_comps=N_COMPS, standardize=True)
    assert_matches_sklearn(counts_adata, values, dtype)
    assert counts_adata.uns["pca"]["params"]["standardize"] is True
    total_variance = np.count_nonzero(values.var(axis=0) > 0)  # unit variance per non-constant gene
    np.testing.assert_allclose(
        counts_adata.uns["pca"]["variance_ratio"],
        counts_adata.uns["pca"]["variance"] / total_variance,
        rtol=1e-6,
    )


def test_whiten_gives_unit_variance_scores(counts_adata, dtype):
    values = dense64(counts_adata.X)
    cr.tl.pca(counts_adata, n_comps=N_COMPS, whiten=True)
    reference = PCA(N_COMPS, svd_solver="full", whiten=True).fit(values)
    np.testing.assert_allclose(counts_adata.obsm["X_pca"], reference.transform(values), **tolerance(dtype))
    np.testing.assert_allclose(counts_adata.obsm["X_pca"].var(axis=0, ddof=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(
        counts_adata.uns["pca"]["variance"], reference.explained_variance_, **tolerance(dtype)
    )


def exact_truncated_svd(values: np.ndarray):
    """Scores, loadings and sklearn TruncatedSVD's variance conventions from numpy's exact SVD."""
    left, singular, right = np.linalg.svd(values, full_matrices=False)
    scores = left[:, :N_COMPS] * singular[:N_COMPS]
    variance = scores.var(axis=0)
    return scores, right[:N_COMPS], variance, variance / values.var(axis=0).sum()


def test_without_centring_is_an_exact_truncated_svd(counts_adata, dtype):
    values = dense64(counts_adata.X)
    cr.tl.pca(counts_adata, n_comps=N_COMPS, zero_center=False)
    scores, loadings, variance, ratio = exact_truncated_svd(values)
    signs = np.sign(loadings[np.arange(N_COMPS), np.abs(loadings).argmax(axis=1)])
    np.testing.assert_allclose(counts_adata.obsm["X_pca"], scores * signs, **tolerance(dtype))
    np.testing.assert_allclose(counts_adata.uns["pca"]["variance"], variance, **tolerance(dtype))
    np.testing.assert_allclose(counts_adata.uns["pca"]["variance_ratio"], ratio, **tolerance(dtype))
    assert "mean" not in counts_adata.uns["pca"]


def rank_probit_reference(counts: np.ndarray) -> np.ndarray:
    """scTOP's transform with scipy: within-cell ranks → normal quantiles → unit L2 norm."""
    probit = special.ndtri(stats.rankdata(counts, axis=1) / (counts.shape[1] + 1))
    return probit / np.linalg.norm(probit, axis=1, keepdims=True)


def test_rank_probit_layer_is_read_as_deltas_plus_offsets(counts_adata):
    cr.pp.rank_probit(counts_adata, dtype=np.float64)
    cr.tl.pca(counts_adata, n_comps=N_COMPS, layer="rank_probit")
    assert_matches_sklearn(counts_adata, rank_probit_reference(dense64(counts_adata.X)), np.float64)
    assert counts_adata.uns["pca"]["params"]["offset_key"] == "rank_probit_offset"


@pytest.mark.parametrize("layer_format", ["csr", "csc", "dense"])
def test_any_layer_with_an_offset_column(layer_format, dtype):
    rng = np.random.default_rng(7)
    deltas = synthetic_counts(50, 30, seed=2) - synthetic_counts(50, 30, seed=3)
    offsets = rng.integers(-2, 3, size=50)
    adata = make_adata(np.zeros((50, 30)))
    adata.layers["shifted"] = as_format(deltas, layer_format, dtype)
    adata.obs["shifted_offset"] = offsets
    cr.tl.pca(adata, n_comps=N_COMPS, layer="shifted")
    assert_matches_sklearn(adata, deltas + offsets[:, None].astype(np.float64), dtype)


def test_implicit_pearson_residuals_match_sklearn_on_their_dense_values(counts_adata, dtype):
    cr.pp.pearson_residuals(counts_adata, dense=False)
    assert "pearson_residuals" not in counts_adata.layers
    residuals = cr.pp.get_pearson_residuals(counts_adata)
    cr.tl.pca(counts_adata, n_comps=N_COMPS, layer="pearson_residuals")
    assert_matches_sklearn(counts_adata, residuals.toarray().astype(np.float64), dtype)
    assert counts_adata.obsm["X_pca"].dtype == residuals.dtype


def scaled_adata(matrix_format: str, dtype) -> ad.AnnData:
    adata = make_adata(as_format(synthetic_counts(70, 30, seed=1), matrix_format, dtype))
    cr.pp.scale(adata)
    return adata


def implicit_values(adata) -> np.ndarray:
    """The values ``cr.pp.scale`` means on sparse data: ``X − var['mean'] / var['std']``."""
    return dense64(adata.X) - (adata.var["mean"] / adata.var["std"]).to_numpy()[None, :]


@pytest.mark.parametrize("matrix_format", ["csr", "csc"])
def test_implicitly_centred_scale_output(matrix_format, dtype):
    adata = scaled_adata(matrix_format, dtype)
    assert adata.uns["scale"]["params"]["implicit_center"]
    explicit = implicit_values(adata)
    cr.tl.pca(adata, n_comps=N_COMPS)
    assert_matches_sklearn(adata, explicit, np.float32 if dtype == np.float32 else np.float64)
    dense = sc.pp.scale(ad.AnnData(dense64(synthetic_counts(70, 30, seed=1))), copy=True)
    np.testing.assert_allclose(explicit, dense.X, rtol=1e-5, atol=1e-5)
    assert adata.uns["pca"]["params"]["implicit_center"] is True


@pytest.mark.parametrize("matrix_format", ["csr", "csc"])
def test_implicit_centre_is_subtracted_without_zero_center(matrix_format, dtype):
    adata = scaled_adata(matrix_format, dtype)
    subset = adata[10:]  # no longer centred: the implicit centre must still be subtracted
    cr.tl.pca(subset, n_comps=N_COMPS, zero_center=False)
    scores, _, variance, ratio = exact_truncated_svd(implicit_values(subset))
    np.testing.assert_allclose(np.abs(subset.obsm["X_pca"]), np.abs(scores), **tolerance(dtype))
    np.testing.assert_allclose(subset.uns["pca"]["variance"], variance, **tolerance(dtype))
    np.testing.assert_allclose(subset.uns["pca"]["variance_ratio"], ratio, **tolerance(dtype))


def test_implicit_scale_of_another_layer_is_ignored():
    adata = make_adata(sparse.csr_matrix(synthetic_counts(70, 30, seed=1).astype(np.float64)))
    adata.layers["raw"] = adata.X.copy()
    cr.pp.scale(adata, layer="raw")
    cr.tl.pca(adata, n_comps=N_COMPS)
    assert adata.uns["pca"]["params"]["implicit_center"] is False
    assert_matches_sklearn(adata, dense64(adata.X), np.float64)


def test_scanpy_plotting_neighbors_and_agreement():
    adata = sc.datasets.pbmc68k_reduced()
    del adata.obsm["X_pca"], adata.varm["PCs"], adata.uns["pca"]
    cr.tl.pca(adata, n_comps=20)
    reference = sc.pp.pca(adata, n_comps=20, svd_solver="full", mask_var=None, copy=True)
    np.testing.assert_allclose(adata.uns["pca"]["variance"], reference.uns["pca"]["variance"], rtol=1e-4)
    np.testing.assert_allclose(
        adata.uns["pca"]["variance_ratio"], reference.uns["pca"]["variance_ratio"], rtol=1e-4
    )
    top = slice(0, 10)  # the float32 reference blurs the close later components
    assert (
        np.degrees(linalg.subspace_angles(adata.varm["PCs"][:, top], reference.varm["PCs"][:, top])).max()
        < 0.1
    )
    axes = sc.pl.pca(adata, color="bulk_labels", annotate_var_explained=True, show=False)
    assert "PC1" in axes.get_xlabel()
    sc.pp.neighbors(adata, use_rep="X_pca", n_neighbors=10)
    assert adata.obsp["connectivities"].shape == (adata.n_obs, adata.n_obs)
    assert adata.uns["neighbors"]["params"]["use_rep"] == "X_pca"


def test_key_added_renames_all_three_outputs(tmp_path):
    adata = make_adata(sparse.csr_matrix(synthetic_counts(60, 30).astype(np.float32)))
    cr.tl.pca(adata, n_comps=5, key_added="my_pca")
    assert "my_pca" in adata.obsm
    assert "my_pca" in adata.varm
    assert "my_pca" in adata.uns
    assert "X_pca" not in adata.obsm
    assert "PCs" not in adata.varm
    assert "pca" not in adata.uns
    sc.pl.embedding(adata, basis="my_pca", show=False)
    adata.write_h5ad(tmp_path / "pca.h5ad")
    back = ad.read_h5ad(tmp_path / "pca.h5ad")
    np.testing.assert_array_equal(back.obsm["my_pca"], adata.obsm["my_pca"])
    np.testing.assert_array_equal(back.uns["my_pca"]["mean"], adata.uns["my_pca"]["mean"])


def test_deterministic_with_signs_fixed_by_the_largest_loading():
    adata = make_adata(sparse.csr_matrix(synthetic_counts(80, 40, seed=5).astype(np.float64)))
    first = cr.tl.pca(adata, n_comps=N_COMPS, random_state=3, copy=True)
    second = cr.tl.pca(adata, n_comps=N_COMPS, random_state=3, copy=True)
    np.testing.assert_array_equal(first.obsm["X_pca"], second.obsm["X_pca"])
    np.testing.assert_array_equal(first.varm["PCs"], second.varm["PCs"])
    loadings = first.varm["PCs"]
    assert (loadings[np.abs(loadings).argmax(axis=0), np.arange(N_COMPS)] > 0).all()
    other_seed = cr.tl.pca(adata, n_comps=N_COMPS, random_state=11, copy=True)
    np.testing.assert_allclose(other_seed.obsm["X_pca"], first.obsm["X_pca"], atol=1e-9)
    assert "X_pca" not in adata.obsm


def test_copy_and_view_inputs():
    adata = make_adata(sparse.csr_matrix(synthetic_counts(60, 30).astype(np.float32)))
    result = cr.tl.pca(adata, n_comps=5, copy=True)
    assert result is not adata
    assert "X_pca" in result.obsm
    assert "X_pca" not in adata.obsm
    view = adata[:40]
    assert cr.tl.pca(view, n_comps=5) is None
    assert view.obsm["X_pca"].shape == (40, 5)
    assert_values = PCA(5, svd_solver="full").fit(dense64(adata.X[:40])).explained_variance_
    np.testing.assert_allclose(view.uns["pca"]["variance"], assert_values, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_comps": 30}, ValueError, "below min\\(n_cells, n_genes\\) = 30"),
        ({"n_comps": 0}, ValueError, "at least 1"),
        ({"n_comps": 2.5}, TypeError, "n_comps must be an integer"),
        ({"layer": "missing"}, ValueError, "Layer 'missing' not found"),
        ({"n_comps": 5, "n_threads": 0}, ValueError, "n_threads must be a positive integer"),
    ],
)
def test_bad_arguments_raise_and_leave_input_untouched(kwargs, error, message):
    adata = make_adata(sparse.csr_matrix(synthetic_counts(60, 30).astype(np.float32)))
    before = adata.copy()
    with pytest.raises(error, match=message):
        cr.tl.pca(adata, **kwargs)
    assert not adata.obsm
    assert not adata.varm
    assert not adata.uns
    np.testing.assert_array_equal(adata.X.toarray(), before.X.toarray())


@pytest.mark.parametrize("matrix_format", ["csr", "csc", "dense"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_values_raise(matrix_format, bad_value):
    values = synthetic_counts(60, 30).astype(np.float64)
    values[3, 4] = bad_value
    adata = make_adata(as_format(values, matrix_format))
    with pytest.raises(ValueError, match="NaN or infinite"):
        cr.tl.pca(adata, n_comps=5)
    assert "X_pca" not in adata.obsm
    deltas = make_adata(sparse.csr_matrix(synthetic_counts(60, 30).astype(np.float64)))
    deltas.layers["shifted"] = deltas.X.copy()
    deltas.obs["shifted_offset"] = np.where(np.arange(60) == 2, bad_value, 0.0)
    with pytest.raises(ValueError, match="shifted_offset"):
        cr.tl.pca(deltas, n_comps=5, layer="shifted")


def test_missing_implicit_scale_statistics_raise():
    scaled = scaled_adata("csr", np.float64)
    del scaled.var["std"]
    with pytest.raises(ValueError, match="var\\['std'\\]"):
        cr.tl.pca(scaled, n_comps=5)
    assert "X_pca" not in scaled.obsm


@pytest.mark.parametrize("matrix_format", ["csr", "csc", "dense"])
def test_randomized_regime_on_a_larger_matrix(matrix_format):
    """Fewer basis columns than genes: the Krylov solver, not a full-rank basis, finds the components."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(220, 4)) * [9.0, 6.0, 4.0, 3.0] @ rng.normal(size=(4, 160))
    values = rng.poisson(np.exp(0.2 * signal - 1.5)).astype(np.float64)
    result = pca_matrix(as_format(values, matrix_format), n_comps=4, n_oversamples=6, n_power_iter=3)
    reference = PCA(4, svd_solver="full").fit(values)
    np.testing.assert_allclose(result.variance, reference.explained_variance_, rtol=1e-6)
    assert np.degrees(linalg.subspace_angles(result.components.T, reference.components_.T)).max() < 0.01
    wide = pca_matrix(as_format(values.T, matrix_format), n_comps=4, n_oversamples=6, n_power_iter=3)
    np.testing.assert_allclose(
        wide.variance, PCA(4, svd_solver="full").fit(values.T).explained_variance_, rtol=1e-6
    )


@pytest.mark.parametrize("matrix_format", ["csr", "csc", "dense", "offset", "pearson"])
def test_krylov_start_from_a_sample_of_cells(monkeypatch, matrix_format):
    """More cells than START_SAMPLE_ROWS: the first block comes from a random subset of cells.

    (One more block than in the test above: the Pearson residuals' top two variances are 5 % apart.)
    """
    monkeypatch.setattr(pca_module, "START_SAMPLE_ROWS", 30)
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(400, 4)) * [9.0, 6.0, 4.0, 3.0] @ rng.normal(size=(4, 160))
    values = rng.poisson(np.exp(0.2 * signal - 1.5)).astype(np.float64)
    if matrix_format == "offset":
        offsets = rng.normal(size=values.shape[0])
        matrix, dense_values = (
            OffsetSparseMatrix(sparse.csr_matrix(values), offsets),
            values + offsets[:, None],
        )
    elif matrix_format == "pearson":
        matrix = PearsonResidualMatrix.from_counts(sparse.csr_matrix(values), theta=10.0)
        dense_values = matrix.toarray()
    else:
        matrix, dense_values = as_format(values, matrix_format), values
    result = pca_matrix(matrix, n_comps=4, n_oversamples=6, n_power_iter=4)
    reference = PCA(4, svd_solver="full").fit(dense_values)
    np.testing.assert_allclose(result.variance, reference.explained_variance_, rtol=1e-6)
    assert np.degrees(linalg.subspace_angles(result.components.T, reference.components_.T)).max() < 0.01
    again = pca_matrix(matrix, n_comps=4, n_oversamples=6, n_power_iter=4)
    np.testing.assert_array_equal(again.scores, result.scores)


def test_project_onto_pcs_reproduces_scores(matrix_format, dtype):
    values = synthetic_counts(50, 30, seed=4)
    matrix = as_format(values, matrix_format, dtype)
    result = pca_matrix(matrix, n_comps=6, standardize=True, whiten=True)
    # the fit's scores come from the search's products, float32 for float32 data
    exact = {"rtol": 1e-10, "atol": 1e-10} if np.dtype(dtype) != np.float32 else tolerance(dtype)
    np.testing.assert_allclose(result.transform(matrix), result.scores, **exact)
    expected = (values[:7] - result.mean) / result.scale @ result.components.T / np.sqrt(result.variance)
    np.testing.assert_allclose(
        project_onto_pcs(as_format(values[:7], matrix_format, dtype), result), expected, **tolerance(dtype)
    )
    with pytest.raises(ValueError, match="align the genes"):
        project_onto_pcs(matrix[:, :10], result)


@pytest.mark.parametrize(
    ("n_comps", "n_oversamples", "dimension", "expected"),
    [(50, None, 10**4, 64), (20, None, 10**4, 48), (50, 20, 10**4, 70), (50, None, 60, 60)],
)
def test_block_width_rounds_the_default_oversampling_to_the_kernels(
    n_comps, n_oversamples, dimension, expected
):
    assert block_width(n_comps, n_oversamples, dimension) == expected


# --- kernels and operator: property tests against numpy ---------------------------------------------

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def sparse_cases(draw):
    n_rows, n_cols, width = draw(st.integers(1, 9)), draw(st.integers(1, 7)), draw(st.integers(1, 4))
    values = draw(arrays(np.int64, (n_rows, n_cols), elements=st.integers(-3, 4)))
    if draw(st.booleans()):
        values[draw(st.integers(0, n_rows - 1))] = 0  # an empty row
    matrix_format = draw(st.sampled_from(["csr", "csc", "dense"]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64]))
    offsets = draw(st.none() | arrays(np.float64, n_rows, elements=st.floats(-2, 2)))
    return values, matrix_format, dtype, offsets, width


@SETTINGS
@given(
    sparse_cases(),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([1, 16, 2**20]),
    st.integers(1, 3),
    st.booleans(),
)
def test_sparse_dense_products(case, product_dtype, tile_bytes, chunk_rows, unsorted):
    """Column tiles from one column each (tile_bytes=1) to one tile; any row chunking; unsorted indices."""
    values, matrix_format, dtype, _, width = case
    if matrix_format == "dense":
        matrix_format = "csr"
    matrix = as_format(values, matrix_format, dtype)
    if unsorted and matrix.nnz > 1:  # same matrix, reversed entries within each row (column for CSC)
        order = np.concatenate(
            [
                np.arange(stop - 1, start - 1, -1)
                for start, stop in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
            ]
        )
        matrix = type(matrix)((matrix.data[order], matrix.indices[order], matrix.indptr), shape=matrix.shape)
    rng = np.random.default_rng(values.size)
    right, left = rng.normal(size=(values.shape[1], width)), rng.normal(size=(values.shape[0], width))
    limit = {"rtol": 1e-5, "atol": 1e-4} if product_dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_pca_operator, "TILE_BYTES", tile_bytes)
        patch.setattr(_pca_operator, "GATHER_CHUNK_ROWS", chunk_rows)
        patch.setattr(_pca_operator, "SCATTER_CHUNK_ENTRIES", chunk_rows)
        forward = sparse_dense_product(matrix, right, transpose=False, dtype=product_dtype)
        backward = sparse_dense_product(matrix, left, transpose=True, dtype=product_dtype)
    assert forward.dtype == product_dtype
    assert backward.dtype == product_dtype
    np.testing.assert_allclose(forward, values @ right, **limit)
    np.testing.assert_allclose(backward, values.T @ left, **limit)


@SETTINGS
@given(sparse_cases())
def test_column_moments_and_operator(case):
    values, matrix_format, dtype, offsets, width = case
    matrix = as_format(values, matrix_format, dtype)
    dense = values.astype(np.float64)
    if offsets is not None and matrix_format != "dense" and np.dtype(dtype).kind == "f":
        matrix = OffsetSparseMatrix(matrix, offsets.astype(dtype))
        dense = dense + offsets.astype(dtype).astype(np.float64)[:, None]
    limit = tolerance(dtype) if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for ddof in (0, 1):
        mean, variance = column_mean_var(matrix, ddof=ddof)
        np.testing.assert_allclose(mean, dense.mean(axis=0), **limit)
        if dense.shape[0] > ddof:
            np.testing.assert_allclose(variance, dense.var(axis=0, ddof=ddof), **limit)
    rng = np.random.default_rng(1)
    center, scale = rng.normal(size=dense.shape[1]), rng.uniform(0.5, 2, size=dense.shape[1])
    operator = build_operator(matrix, center=center, scale=scale)
    explicit = (dense - center) / scale
    right, left = rng.normal(size=(dense.shape[1], width)), rng.normal(size=(dense.shape[0], width))
    np.testing.assert_allclose(operator.matmat(right), explicit @ right, **limit)
    np.testing.assert_allclose(operator.rmatmat(left), explicit.T @ left, **limit)


@pytest.mark.parametrize("rank", [6, 3])
def test_orthonormal_basis_spans_the_block(rank):
    rng = np.random.default_rng(4)
    block = rng.normal(size=(300, rank)) @ rng.normal(size=(rank, 6)) * np.logspace(0, 6, 6)
    basis = _orthonormal_basis(block.copy())
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-10)
    if rank == 6:  # full rank: the same column space
        np.testing.assert_allclose(
            basis @ (basis.T @ block), block, rtol=1e-8, atol=1e-8 * np.abs(block).max()
        )


# --- real data ----------------------------------------------------------------------------------------


def exact_top_variances(cell_gram: np.ndarray, n_comps: int) -> np.ndarray:
    """Exact PCA variances from ``X Xᵀ``: eigenvalues of ``H X Xᵀ H`` (``H`` centres the cells) / (n − 1)."""
    centred = cell_gram - cell_gram.mean(axis=0, keepdims=True)
    centred -= centred.mean(axis=1, keepdims=True)
    n_cells = cell_gram.shape[0]
    eigenvalues = linalg.eigh(centred, eigvals_only=True, subset_by_index=[n_cells - n_comps, n_cells - 1])
    return eigenvalues[::-1] / (n_cells - 1)


def assert_top_variances_within_one_percent(adata, cell_gram: np.ndarray, **kwargs):
    cr.tl.pca(adata, n_comps=50, **kwargs)
    relative = np.abs(adata.uns["pca"]["variance"] / exact_top_variances(cell_gram, 50) - 1)
    assert relative.max() < 0.01


@pytest.mark.shared_data
def test_baron_log_normalized_within_one_percent_of_exact():
    adata = read_shared("baron_human_subset")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    values = sparse.csr_matrix(adata.X, dtype=np.float64)
    assert_top_variances_within_one_percent(adata, (values @ values.T).toarray())


@pytest.mark.shared_data
def test_baron_rank_probit_within_one_percent_of_exact():
    adata = read_shared("baron_human_subset")
    cr.pp.rank_probit(adata)
    deltas = sparse.csr_matrix(adata.layers["rank_probit"], dtype=np.float64)
    offsets = adata.obs["rank_probit_offset"].to_numpy(np.float64)
    row_sums = np.asarray(deltas.sum(axis=1)).ravel()
    # (Δ + o 1ᵀ)(Δ + o 1ᵀ)ᵀ = Δ Δᵀ + (Δ 1) oᵀ + o (Δ 1)ᵀ + n_genes o oᵀ
    gram = (deltas @ deltas.T).toarray() + np.outer(row_sums, offsets) + np.outer(offsets, row_sums)
    gram += adata.n_vars * np.outer(offsets, offsets)
    assert_top_variances_within_one_percent(adata, gram, layer="rank_probit")
