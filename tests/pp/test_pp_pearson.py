"""cr.pp.pearson_residuals against scanpy.experimental.pp.normalize_pearson_residuals."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr


def scanpy_residuals(adata, **kwargs) -> np.ndarray:
    expected = adata.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sc.experimental.pp.normalize_pearson_residuals(expected, **kwargs)
    layer = kwargs.get("layer")
    return np.asarray(expected.X if layer is None else expected.layers[layer])


@pytest.mark.parametrize(("theta", "clip"), [(100, None), (5.0, 2.5)])
def test_pearson_residuals_match_scanpy(counts_adata, theta, clip):
    expected = scanpy_residuals(counts_adata, theta=theta, clip=clip)
    result = cr.pp.pearson_residuals(counts_adata, theta=theta, clip=clip, copy=True)
    assert isinstance(result.X, np.ndarray)
    assert result.X.flags.c_contiguous
    # float32 stays float32 (scanpy also returns float32 with an explicit clip, float64 with clip=None)
    assert result.X.dtype == (np.float32 if counts_adata.X.dtype == np.float32 else np.float64)
    defined = np.isfinite(expected)  # scanpy gives NaN for all-zero genes (mu = 0)
    assert not defined.all()
    np.testing.assert_allclose(result.X[defined], expected[defined], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.X[~defined], 0.0)
    uns = result.uns["pearson_residuals_normalization"]
    assert (uns["theta"], uns["clip"], uns["computed_on"]) == (theta, clip, "adata.X")
    assert uns["params"]["clip"] == pytest.approx(np.sqrt(counts_adata.n_obs) if clip is None else clip)


def test_chunking_does_not_change_the_result(matrix_format):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, np.float64))
    whole = cr.pp.pearson_residuals(adata, inplace=False)
    chunked = cr.pp.pearson_residuals(adata, chunk_size=7, inplace=False)
    np.testing.assert_array_equal(whole, chunked)


def test_inplace_false_returns_dense_and_leaves_adata(matrix_format):
    adata = make_adata(as_format(synthetic_counts(), matrix_format, np.float32))
    adata.layers["counts"] = adata.X.copy()
    before = snapshot(adata)
    residuals = cr.pp.pearson_residuals(adata, layer="counts", inplace=False)
    assert_unchanged(adata, before)
    assert residuals.shape == adata.shape
    assert residuals.dtype == np.float32
    with pytest.raises(ValueError, match="copy=True"):
        cr.pp.pearson_residuals(adata, inplace=False, copy=True)


def test_layer_is_replaced_and_recorded():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.int64))
    adata.layers["counts"] = adata.X.copy()
    expected = scanpy_residuals(adata, layer="counts")
    cr.pp.pearson_residuals(adata, layer="counts")
    defined = np.isfinite(expected)
    np.testing.assert_allclose(adata.layers["counts"][defined], expected[defined], rtol=1e-10, atol=1e-10)
    assert adata.uns["pearson_residuals_normalization"]["computed_on"] == "counts"


def test_non_integer_counts_warn():
    adata = make_adata(synthetic_counts() + 0.5)
    with pytest.warns(UserWarning, match="non-integer"):
        cr.pp.pearson_residuals(adata)


@pytest.mark.parametrize(("kwargs", "message"), [({"theta": 0}, "theta"), ({"clip": -1}, "clip")])
def test_bad_parameters_raise(kwargs, message):
    adata = make_adata(synthetic_counts())
    before = snapshot(adata)
    with pytest.raises(ValueError, match=message):
        cr.pp.pearson_residuals(adata, **kwargs)
    assert_unchanged(adata, before)
