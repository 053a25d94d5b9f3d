"""Bad inputs raise a clear error and leave the AnnData untouched, for every pp function of this module."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr

COUNT_FUNCTIONS = {
    "normalize_total": cr.pp.normalize_total,
    "log_normalize": cr.pp.log_normalize,
    "pearson_residuals": cr.pp.pearson_residuals,
    "rank_probit": cr.pp.rank_probit,
    "hvg_seurat_v3": lambda adata, **kw: cr.pp.select_genes(adata, method="hvg", **kw),
}
ALL_FUNCTIONS = {
    **COUNT_FUNCTIONS,
    "log1p": cr.pp.log1p,
    "scale": cr.pp.scale,
    "anova": lambda adata, **kw: cr.pp.select_genes(adata, labels_key="cell_type", **kw),
}


def corrupted(matrix_format: str, value: float):
    dense = synthetic_counts().astype(np.float64)
    dense[5, 7] = value
    return make_adata(as_format(dense, matrix_format))


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_raise(matrix_format, name, value):
    adata = corrupted(matrix_format, value)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ALL_FUNCTIONS[name](adata)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", COUNT_FUNCTIONS)
def test_negative_counts_raise(matrix_format, name):
    adata = corrupted(matrix_format, -1.0)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="negative"):
        COUNT_FUNCTIONS[name](adata)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
def test_unknown_layer_raises(name):
    adata = make_adata(synthetic_counts())
    adata.layers["counts"] = adata.X.copy()
    before = snapshot(adata)
    with pytest.raises(ValueError, match="Layer 'missing' not found"):
        ALL_FUNCTIONS[name](adata, layer="missing")
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", ["normalize_total", "log_normalize"])
def test_zero_count_cells_warn(matrix_format, name):
    dense = synthetic_counts()
    dense[0] = 0
    adata = make_adata(as_format(dense, matrix_format, np.float32))
    with pytest.warns(UserWarning, match="zero counts"):
        COUNT_FUNCTIONS[name](adata)
    assert not (adata.X[0].toarray() if sparse.issparse(adata.X) else adata.X[0]).any()


@pytest.mark.parametrize("function", [cr.pp.log1p, cr.pp.log_normalize])
def test_bad_log_base_raises(function):
    adata = make_adata(synthetic_counts())
    before = snapshot(adata)
    with pytest.raises(ValueError, match="base"):
        function(adata, base=1)
    assert_unchanged(adata, before)


def test_non_positive_target_sum_raises():
    adata = make_adata(synthetic_counts().astype(np.float32))
    before = snapshot(adata)
    with pytest.raises(ValueError, match="target_sum"):
        cr.pp.normalize_total(adata, target_sum=0)
    assert_unchanged(adata, before)
