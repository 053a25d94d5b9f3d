"""cr.pp.normalize_total, log1p and log_normalize against scanpy."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot, to_dense

import cellrep as cr


def input_format(adata) -> str:
    return adata.X.format if sparse.issparse(adata.X) else "dense"


def dense_copy(adata):
    """Reference input for scanpy: its CSR normalize_total kernel fails under NUMBA_DISABLE_JIT=1."""
    copy = adata.copy()
    copy.X = to_dense(copy.X)
    return copy


@pytest.mark.parametrize("target_sum", [None, 1e4])
def test_normalize_total_matches_scanpy(counts_adata, target_sum):
    expected = dense_copy(counts_adata)
    sc.pp.normalize_total(expected, target_sum=target_sum, key_added="size_factor")
    result = cr.pp.normalize_total(counts_adata, target_sum=target_sum, key_added="size_factor", copy=True)
    assert input_format(result) == input_format(counts_adata)
    assert result.X.dtype == expected.X.dtype  # int -> float32 as scanpy
    np.testing.assert_allclose(to_dense(result.X), to_dense(expected.X), rtol=1e-6)
    np.testing.assert_allclose(result.obs["size_factor"], expected.obs["size_factor"], rtol=1e-6)
    totals = to_dense(result.X).sum(axis=1)
    target = np.median(synthetic_counts().sum(axis=1)) if target_sum is None else target_sum
    np.testing.assert_allclose(totals, target, rtol=1e-5)
    assert result.uns["normalize_total"]["params"]["target_sum"] == pytest.approx(target)


def test_log1p_matches_scanpy(counts_adata):
    expected = counts_adata.copy()
    sc.pp.log1p(expected, base=2)
    result = cr.pp.log1p(counts_adata, base=2, copy=True)
    assert input_format(result) == input_format(counts_adata)
    assert result.X.dtype == expected.X.dtype  # int -> float64 as scanpy
    np.testing.assert_allclose(to_dense(result.X), to_dense(expected.X), rtol=1e-6)
    assert result.uns["log1p"] == {"base": 2}
    with pytest.warns(UserWarning, match="already log-transformed"):
        cr.pp.log1p(result)


@pytest.mark.parametrize(("target_sum", "base"), [(1e4, None), (None, 2.0)])
def test_log_normalize_equals_normalize_total_then_log1p(counts_adata, target_sum, base):
    expected = dense_copy(counts_adata)
    sc.pp.normalize_total(expected, target_sum=target_sum)
    sc.pp.log1p(expected, base=base)
    result = cr.pp.log_normalize(counts_adata, target_sum=target_sum, base=base, copy=True)
    assert input_format(result) == input_format(counts_adata)
    assert result.X.dtype == expected.X.dtype
    np.testing.assert_allclose(to_dense(result.X), to_dense(expected.X), rtol=1e-6)
    assert result.uns["log1p"] == {"base": base}
    assert result.uns["log_normalize"]["params"]["base"] == base


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_log_normalize_counts_above_the_log_table_match_scanpy(matrix_format, dtype):
    """Counts >= 256 (and >= 2**32) in rows that also take their small counts from the log table."""
    counts = synthetic_counts(n_genes=400, density=0.8)
    counts[::3, 5] = 3000
    counts[1, 7] = 10**10
    counts[2, :] = 255  # the largest count that fits the table
    adata = make_adata(as_format(counts, matrix_format, dtype))
    expected = dense_copy(adata)
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    cr.pp.log_normalize(adata)
    assert adata.X.dtype == expected.X.dtype
    np.testing.assert_allclose(to_dense(adata.X), expected.X, rtol=1e-6)


def test_log_normalize_accepts_a_stored_negative_zero_and_views():
    """A stored -0.0 is a valid count (only its sign bit differs); a view becomes actual, its parent unchanged."""
    counts = synthetic_counts().astype(np.float32)
    matrix = sparse.csr_matrix(counts)
    matrix.data[0] = -0.0
    counts[np.unravel_index(np.flatnonzero(counts)[0], counts.shape)] = 0
    parent = make_adata(matrix)
    before = snapshot(parent)
    view = parent[:20]
    cr.pp.log_normalize(view)
    assert not view.is_view
    expected = np.log1p(counts[:20] / counts[:20].sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(to_dense(view.X), expected, rtol=1e-6)
    assert_unchanged(parent, before)


def test_float_input_is_updated_in_place_without_copy():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.float32))
    data = adata.X.data
    assert cr.pp.log_normalize(adata) is None
    assert adata.X.data is data
    assert np.shares_memory(adata.X.data, data)


def test_inplace_false_returns_matrix_and_leaves_adata(counts_adata):
    before = snapshot(counts_adata)
    result = cr.pp.normalize_total(counts_adata, target_sum=100, inplace=False)
    assert_unchanged(counts_adata, before)
    assert type(result) is type(counts_adata.X)
    expected = synthetic_counts() / synthetic_counts().sum(axis=1, keepdims=True) * 100
    np.testing.assert_allclose(to_dense(result), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="copy=True"):
        cr.pp.normalize_total(counts_adata, inplace=False, copy=True)


def test_copy_leaves_original_and_layer_is_used():
    adata = make_adata(as_format(synthetic_counts(), "csr", np.float32))
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X * 0 + adata.X  # a different object with the same values
    before = snapshot(adata)
    result = cr.pp.log_normalize(adata, layer="counts", copy=True)
    assert_unchanged(adata, before)
    np.testing.assert_array_equal(to_dense(result.X), before["X"])
    expected = np.log1p(synthetic_counts() / synthetic_counts().sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(to_dense(result.layers["counts"]), expected, rtol=1e-6)


def test_view_becomes_actual_and_parent_is_untouched():
    parent = make_adata(as_format(synthetic_counts(), "csr", np.float32))
    before = snapshot(parent)
    view = parent[:20]
    cr.pp.normalize_total(view, target_sum=10)
    assert not view.is_view
    np.testing.assert_allclose(to_dense(view.X).sum(axis=1), 10, rtol=1e-6)
    assert_unchanged(parent, before)


def test_zero_count_cells_warn_and_stay_zero():
    counts = synthetic_counts()
    counts[[3, 7]] = 0
    adata = make_adata(counts.astype(np.float64))
    expected = adata.copy()
    with pytest.warns(UserWarning, match="zero counts"):
        sc.pp.normalize_total(expected)
    with pytest.warns(UserWarning, match="2 cells have zero counts"):
        cr.pp.normalize_total(adata)
    assert not np.any(adata.X[[3, 7]])
    np.testing.assert_allclose(
        adata.X, expected.X, rtol=1e-12
    )  # median of non-empty cells, as scanpy (dense)


def test_pbmc68k_reduced_raw_log1p_roundtrip():
    adata = sc.datasets.pbmc68k_reduced()
    raw = adata.raw.to_adata()
    counts_like = raw.X.copy()
    counts_like.data = np.expm1(counts_like.data)
    candidate = make_adata(counts_like)
    expected = candidate.copy()
    cr.pp.log1p(candidate)
    sc.pp.log1p(expected)
    np.testing.assert_allclose(candidate.X.toarray(), expected.X.toarray(), rtol=1e-6)
    np.testing.assert_allclose(candidate.X.toarray(), raw.X.toarray(), rtol=1e-5, atol=1e-6)
