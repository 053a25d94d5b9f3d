"""cr.pp.pearson_residuals (dense and implicit) against scanpy.experimental.pp.normalize_pearson_residuals and numpy."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr
from cellrep._array._pearson import PearsonResidualMatrix


def scanpy_residuals(adata, **kwargs) -> np.ndarray:
    expected = adata.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sc.experimental.pp.normalize_pearson_residuals(expected, **kwargs)
    layer = kwargs.get("layer")
    return np.asarray(expected.X if layer is None else expected.layers[layer])


def numpy_residuals(values: np.ndarray, theta: float = 100.0, clip: float | None = None) -> np.ndarray:
    """The residuals from their formula, in float64 (0 where ``mu == 0``)."""
    values = values.astype(np.float64)
    mu = np.outer(values.sum(axis=1), values.sum(axis=0)) / (values.sum() or 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        residuals = np.where(mu > 0, (values - mu) / np.sqrt(mu + mu**2 / theta), 0.0)
    bound = np.sqrt(len(values)) if clip is None else clip
    return np.clip(residuals, -bound, bound)


def tolerance(dtype) -> dict:
    return {"rtol": 1e-5, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def assert_matches_scanpy(result: np.ndarray, expected: np.ndarray) -> None:
    defined = np.isfinite(expected)  # scanpy gives NaN for all-zero genes (mu = 0)
    assert not defined.all()
    np.testing.assert_allclose(result[defined], expected[defined], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result[~defined], 0.0)


@pytest.mark.parametrize("dense", [None, True])
@pytest.mark.parametrize(("theta", "clip"), [(100, None), (5.0, 2.5)])
def test_pearson_residuals_match_scanpy(counts_adata, theta, clip, dense):
    expected = scanpy_residuals(counts_adata, theta=theta, clip=clip)
    result = cr.pp.pearson_residuals(counts_adata, theta=theta, clip=clip, dense=dense, copy=True)
    implicit = sparse.issparse(counts_adata.X) and dense is None
    values = np.asarray(cr.pp.get_pearson_residuals(result)) if implicit else result.X
    assert isinstance(values, np.ndarray)
    assert values.flags.c_contiguous
    # float32 stays float32 (scanpy also returns float32 with an explicit clip, float64 with clip=None)
    assert values.dtype == (np.float32 if counts_adata.X.dtype == np.float32 else np.float64)
    assert_matches_scanpy(values, expected)
    used_clip = np.sqrt(counts_adata.n_obs) if clip is None else clip
    if implicit:
        assert result.X is not counts_adata.X  # copy=True copied the counts, which stay in X
        np.testing.assert_array_equal(result.X.toarray(), counts_adata.X.toarray())
        params = result.uns["pearson_residuals"]["params"]
        assert (params["theta"], params["layer"], params["implicit"]) == (theta, None, True)
        assert params["clip"] == pytest.approx(used_clip)
        assert params["total"] == pytest.approx(counts_adata.X.sum())
        assert "pearson_residuals_normalization" not in result.uns
        return
    uns = result.uns["pearson_residuals_normalization"]
    assert (uns["theta"], uns["clip"], uns["computed_on"]) == (theta, clip, "adata.X")
    assert uns["params"]["clip"] == pytest.approx(used_clip)


def test_chunking_does_not_change_the_result(matrix_format):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, np.float64))
    whole = cr.pp.pearson_residuals(adata, dense=True, inplace=False)
    chunked = cr.pp.pearson_residuals(adata, dense=True, chunk_size=7, inplace=False)
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(
        np.asarray(cr.pp.pearson_residuals(adata, dense=False, inplace=False)), whole
    )


@pytest.mark.parametrize("dense", [None, True])
def test_inplace_false_returns_residuals_and_leaves_adata(matrix_format, dense):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, np.float32))
    adata.layers["counts"] = adata.X.copy()
    before = snapshot(adata)
    residuals = cr.pp.pearson_residuals(adata, layer="counts", dense=dense, inplace=False)
    assert_unchanged(adata, before)
    expected_type = PearsonResidualMatrix if matrix_format != "dense" and dense is None else np.ndarray
    assert isinstance(residuals, expected_type)
    assert residuals.shape == adata.shape
    assert residuals.dtype == np.float32
    assert_matches_scanpy(np.asarray(residuals), scanpy_residuals(adata, layer="counts"))
    with pytest.raises(ValueError, match="copy=True"):
        cr.pp.pearson_residuals(adata, inplace=False, copy=True)


def test_layer_is_replaced_and_recorded():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.int64))
    adata.layers["counts"] = adata.X.copy()
    expected = scanpy_residuals(adata, layer="counts")
    cr.pp.pearson_residuals(adata, layer="counts", dense=True)
    defined = np.isfinite(expected)
    np.testing.assert_allclose(adata.layers["counts"][defined], expected[defined], rtol=1e-10, atol=1e-10)
    assert adata.uns["pearson_residuals_normalization"]["computed_on"] == "counts"


def test_implicit_result_is_stored_and_read_back(matrix_format, dtype, tmp_path):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, dtype))
    adata.layers["counts"] = adata.X.copy()
    counts = adata.layers["counts"]
    expected = scanpy_residuals(adata, layer="counts", theta=10.0)
    cr.pp.pearson_residuals(adata, layer="counts", theta=10.0, key_added="pr", dense=False)
    assert adata.layers["counts"] is counts  # nothing densified, nothing copied
    dense_counts = np.asarray(counts.toarray() if sparse.issparse(counts) else counts, dtype=np.float64)
    np.testing.assert_allclose(adata.obs["pr_cell_total"], dense_counts.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(adata.var["pr_gene_total"], dense_counts.sum(axis=0), rtol=1e-12)
    params = adata.uns["pr"]["params"]
    assert (params["layer"], params["theta"], params["method"]) == ("counts", 10.0, "pearson_residuals")
    residuals = cr.pp.get_pearson_residuals(adata, "pr")
    assert residuals.counts is counts
    assert_matches_scanpy(np.asarray(residuals), expected)

    adata.write_h5ad(tmp_path / "pearson.h5ad")
    reread = cr.pp.get_pearson_residuals(ad.read_h5ad(tmp_path / "pearson.h5ad"), "pr")
    np.testing.assert_array_equal(np.asarray(reread), np.asarray(residuals))
    # a cell subset keeps the model: its rows of the full residual matrix
    cells = cr.pp.get_pearson_residuals(adata[::3].copy(), "pr")
    np.testing.assert_array_equal(np.asarray(cells), np.asarray(residuals)[::3])


def test_changed_counts_or_missing_record_raise():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.float32))
    with pytest.raises(ValueError, match="does not record implicit Pearson residuals"):
        cr.pp.get_pearson_residuals(adata)
    cr.pp.pearson_residuals(adata)
    with pytest.raises(ValueError, match="does not record"):
        cr.pp.get_pearson_residuals(adata, "other")
    genes = adata[:, 5:].copy()
    with pytest.raises(ValueError, match=r"counts in adata\.X changed.*Rerun"):
        cr.pp.get_pearson_residuals(genes)
    missing = adata.copy()
    del missing.var["pearson_residuals_gene_total"]
    with pytest.raises(ValueError, match="gene_total'\\] not found"):
        cr.pp.get_pearson_residuals(missing)
    adata.X.data[0] += 3
    with pytest.raises(ValueError, match=r"counts in adata\.X changed"):
        cr.pp.get_pearson_residuals(adata)
    cr.pp.log1p(adata)
    with pytest.raises(ValueError, match="changed"):
        cr.pp.get_pearson_residuals(adata)


def test_dense_input_can_be_kept_implicit():
    adata = make_adata(synthetic_counts().astype(np.float32))
    counts = adata.X
    cr.pp.pearson_residuals(adata, dense=False)
    assert adata.X is counts
    assert_matches_scanpy(np.asarray(cr.pp.get_pearson_residuals(adata)), scanpy_residuals(adata))


@pytest.fixture
def residuals_and_values(matrix_format, dtype):
    counts = as_format(synthetic_counts(), matrix_format, dtype)
    # a 600-byte budget: 1-3 rows (or genes) per block, so every product crosses many blocks
    full = PearsonResidualMatrix.from_counts(counts, theta=20.0, clip=3.0)
    residuals = PearsonResidualMatrix(
        counts, full.cell_totals, full.gene_totals, full.total, full.theta, full.clip, block_bytes=600
    )
    return residuals, numpy_residuals(synthetic_counts(), theta=20.0, clip=3.0)


def test_products_and_moments_match_numpy(residuals_and_values, dtype):
    residuals, values = residuals_and_values
    rng = np.random.default_rng(0)
    right, left = rng.standard_normal((values.shape[1], 5)), rng.standard_normal((values.shape[0], 5))
    np.testing.assert_allclose(residuals.toarray(), values, **tolerance(dtype))
    np.testing.assert_allclose(residuals.matmul(right), values @ right, **tolerance(dtype))
    np.testing.assert_allclose(residuals.matmul(right[:, 0]), values @ right[:, 0], **tolerance(dtype))
    np.testing.assert_allclose(residuals.rmatmul(left), values.T @ left, **tolerance(dtype))
    np.testing.assert_allclose(residuals.rmatmul(left[:, 0]), values.T @ left[:, 0], **tolerance(dtype))
    np.testing.assert_allclose(residuals @ right, values @ right, **tolerance(dtype))
    np.testing.assert_allclose(left.T @ residuals, left.T @ values, **tolerance(dtype))
    product = residuals.matmul(right.astype(np.float32), dtype=np.float64)
    assert product.dtype == np.float64
    np.testing.assert_allclose(product, values @ right.astype(np.float32), **tolerance(dtype))
    for ddof in (0, 1):
        mean, variance = residuals.column_mean_var(ddof=ddof)
        np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(variance, values.var(axis=0, ddof=ddof), rtol=1e-6, atol=1e-6)


def test_subsets_are_entries_of_the_full_matrix(residuals_and_values, dtype):
    residuals, values = residuals_and_values
    genes = np.array([3, 0, 17, 17, 39])
    mask = np.arange(values.shape[0]) % 4 == 1
    for key, expected in (
        ((slice(None), genes), values[:, genes]),
        (mask, values[mask]),
        ((slice(5, 40, 3), slice(10, 30)), values[5:40:3, 10:30]),
        ((mask, genes), values[mask][:, genes]),
        (7, values[[7]]),
        ((slice(None), 4), values[:, [4]]),
    ):
        subset = residuals[key]
        assert isinstance(subset, PearsonResidualMatrix)
        assert subset.shape == expected.shape
        np.testing.assert_allclose(subset.toarray(), expected, **tolerance(dtype))
        right = np.ones(expected.shape[1])
        np.testing.assert_allclose(subset.matmul(right), expected @ right, **tolerance(dtype))


@settings(max_examples=40, deadline=None)
@given(
    values=st.integers(1, 30).flatmap(
        lambda n_rows: st.integers(1, 12).flatmap(
            lambda n_cols: arrays(np.int64, (n_rows, n_cols), elements=st.integers(0, 6))
        )
    ),
    matrix_format=st.sampled_from(["dense", "csr", "csc"]),
    dtype=st.sampled_from([np.float32, np.float64, np.int64]),
    block_bytes=st.integers(1, 400),
    width=st.integers(1, 4),
    empty=st.booleans(),
)
def test_block_products_property(values, matrix_format, dtype, block_bytes, width, empty):
    if empty:  # an empty cell and an empty gene
        values[0] = 0
        values[:, -1] = 0
    counts = as_format(values, matrix_format, dtype)
    full = PearsonResidualMatrix.from_counts(counts, theta=5.0)
    residuals = PearsonResidualMatrix(
        counts, full.cell_totals, full.gene_totals, full.total, full.theta, full.clip, block_bytes=block_bytes
    )
    expected = numpy_residuals(values, theta=5.0)
    rng = np.random.default_rng(len(values))
    right, left = rng.standard_normal((values.shape[1], width)), rng.standard_normal((values.shape[0], width))
    np.testing.assert_allclose(
        residuals.matmul(right, dtype=np.float64), expected @ right, rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        residuals.rmatmul(left, dtype=np.float64), expected.T @ left, rtol=1e-9, atol=1e-9
    )
    mean, variance = residuals.column_mean_var(ddof=1)
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-9, atol=1e-9)
    if len(values) > 1:
        np.testing.assert_allclose(variance, expected.var(axis=0, ddof=1), rtol=1e-9, atol=1e-9)


def test_bad_residual_matrices_raise():
    counts = sparse.csr_matrix(synthetic_counts())
    residuals = PearsonResidualMatrix.from_counts(counts)
    with pytest.raises(TypeError, match="CSR/CSC"):
        PearsonResidualMatrix.from_counts(counts.tocoo())
    with pytest.raises(ValueError, match="cell_totals has 3 entries"):
        PearsonResidualMatrix(counts, np.ones(3), residuals.gene_totals, 1.0, 100.0, 1.0)
    with pytest.raises(ValueError, match="theta"):
        PearsonResidualMatrix.from_counts(counts, theta=0)
    with pytest.raises(ValueError, match="right must have 40 rows"):
        residuals.matmul(np.ones(7))
    with pytest.raises(ValueError, match="left must have 60 rows"):
        residuals.rmatmul(np.ones((40, 2)))


def test_non_integer_counts_warn():
    adata = make_adata(synthetic_counts() + 0.5)
    with pytest.warns(UserWarning, match="non-integer"):
        cr.pp.pearson_residuals(adata)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"theta": 0}, ValueError, "theta"),
        ({"clip": -1}, ValueError, "clip"),
        ({"dense": "yes"}, TypeError, "dense"),
    ],
)
def test_bad_parameters_raise(matrix_format, kwargs, error, message):
    adata = make_adata(as_format(synthetic_counts(), matrix_format))
    before = snapshot(adata)
    with pytest.raises(error, match=message):
        cr.pp.pearson_residuals(adata, **kwargs)
    assert_unchanged(adata, before)
