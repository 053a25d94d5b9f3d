"""cr.pp.scale against scanpy (dense), implicit centring on sparse input, column_mean_std against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot, to_dense

import cellrep as cr
from cellrep._array._scale import column_mean_std


def tolerance(dtype) -> dict:
    # scanpy squares float32 values in float32 before averaging; cellrep accumulates in float64
    return {"rtol": 1e-5, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


@pytest.mark.parametrize("max_value", [None, 2.0])
@pytest.mark.parametrize("zero_center", [True, False])
def test_dense_scale_matches_scanpy(dtype, zero_center, max_value):
    adata = make_adata(as_format(synthetic_counts(), "dense", dtype))
    expected = adata.copy()
    sc.pp.scale(expected, zero_center=zero_center, max_value=max_value)
    result = cr.pp.scale(adata, zero_center=zero_center, max_value=max_value, copy=True)
    assert result.X.dtype == expected.X.dtype  # int -> float64 as scanpy
    np.testing.assert_allclose(result.X, expected.X, **tolerance(dtype))
    np.testing.assert_allclose(result.var["mean"], expected.var["mean"], rtol=1e-12)
    np.testing.assert_allclose(result.var["std"], expected.var["std"], **tolerance(dtype))
    assert result.uns["scale"]["params"]["implicit_center"] is False


@pytest.mark.parametrize("max_value", [None, 1.5])
@pytest.mark.parametrize("matrix_format", ["csr", "csc"])
def test_sparse_scale_without_centering_matches_scanpy(matrix_format, dtype, max_value):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, dtype))
    expected = adata.copy()
    sc.pp.scale(expected, zero_center=False, max_value=max_value)
    result = cr.pp.scale(adata, zero_center=False, max_value=max_value, copy=True)
    assert result.X.format == matrix_format
    assert result.X.nnz == adata.X.nnz
    np.testing.assert_allclose(to_dense(result.X), to_dense(expected.X), **tolerance(dtype))
    np.testing.assert_allclose(result.var["std"], expected.var["std"], **tolerance(dtype))


@pytest.mark.parametrize("matrix_format", ["csr", "csc"])
def test_sparse_zero_center_is_implicit(matrix_format, dtype):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, dtype))
    expected = make_adata(synthetic_counts().astype(dtype))
    sc.pp.scale(expected)
    result = cr.pp.scale(adata, copy=True)
    assert sparse.issparse(result.X)
    assert result.X.format == matrix_format
    assert result.X.nnz == adata.X.nnz
    params = result.uns["scale"]["params"]
    assert params["implicit_center"] is True
    assert params["zero_center"] is True
    centred = to_dense(result.X) - (result.var["mean"] / result.var["std"]).to_numpy()
    np.testing.assert_allclose(centred, expected.X, **tolerance(dtype))
    np.testing.assert_allclose(
        to_dense(result.X).mean(axis=0), result.var["mean"] / result.var["std"], rtol=1e-5
    )


def test_sparse_implicit_center_with_max_value_raises_and_leaves_adata():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.float32))
    before = snapshot(adata)
    with pytest.raises(ValueError, match="implicit"):
        cr.pp.scale(adata, max_value=3)
    assert_unchanged(adata, before)


def test_zero_variance_genes_get_std_one_and_zero_values():
    counts = synthetic_counts().astype(np.float64)
    counts[:, 5] = 3.0
    adata = make_adata(counts)
    cr.pp.scale(adata)
    assert adata.var["std"].iloc[5] == 1.0
    assert adata.var["std"].iloc[0] == 1.0  # all-zero gene
    np.testing.assert_array_equal(adata.X[:, [0, 1, 5]], 0.0)


@pytest.mark.parametrize("ddof", [0, 1])
def test_column_mean_std_matches_numpy(matrix_format, dtype, ddof):
    dense = synthetic_counts(35, 17, seed=3)
    mean, std = column_mean_std(as_format(dense, matrix_format, dtype), ddof=ddof)
    np.testing.assert_allclose(mean, dense.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, dense.std(axis=0, ddof=ddof), rtol=1e-10, atol=1e-12)
    assert mean.dtype == std.dtype == np.float64


def test_scale_pbmc68k_reduced_raw_matches_scanpy():
    raw = sc.datasets.pbmc68k_reduced().raw.to_adata()
    expected = raw.copy()
    sc.pp.scale(expected, zero_center=False, max_value=10)
    cr.pp.scale(raw, zero_center=False, max_value=10)
    np.testing.assert_allclose(raw.X.toarray(), expected.X.toarray(), rtol=1e-5, atol=1e-6)
