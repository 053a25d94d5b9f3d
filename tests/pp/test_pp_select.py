"""cr.pp.select_genes: sparse ANOVA against sklearn f_classif, hvg against scanpy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from sklearn.feature_selection import f_classif
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr
from cellrep._array._anova import anova_f_statistics
from cellrep.pp._select import top_mask


def sklearn_f(dense: np.ndarray, labels) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f_classif(np.asarray(dense, dtype=np.float64), np.asarray(labels))[0]


def test_anova_matches_sklearn(counts_adata):
    expected = sklearn_f(synthetic_counts(), counts_adata.obs["cell_type"])
    cr.pp.select_genes(counts_adata, labels_key="cell_type", n_top=10)
    scores = counts_adata.var["anova_score"].to_numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)  # NaN (constant genes) in the same places
    assert np.isnan(scores[:2]).all()
    selected = counts_adata.var["selected"].to_numpy()
    assert selected.dtype == bool
    assert selected.sum() == 10
    finite = np.where(np.isnan(expected), -np.inf, expected)
    assert finite[selected].min() >= finite[~selected].max()
    assert counts_adata.uns["select_genes"]["params"] == {
        "method": "anova",
        "n_top": 10,
        "layer": None,
        "labels_key": "cell_type",
    }


def test_anova_skips_missing_labels_and_rare_classes(matrix_format):
    dense = synthetic_counts()
    adata = make_adata(as_format(dense, matrix_format, np.float32))
    labels = adata.obs["cell_type"].astype(object).to_numpy()
    labels[:4] = None
    labels[4] = "lonely"
    adata.obs["cell_type"] = pd.Categorical(labels)
    with pytest.warns(UserWarning, match="missing 'cell_type' label|fewer than 2 cells"):
        result = cr.pp.select_genes(adata, labels_key="cell_type", n_top=5, inplace=False)
    assert isinstance(result, pd.DataFrame)
    assert list(result.columns) == ["anova_score", "selected"]
    np.testing.assert_allclose(result["anova_score"], sklearn_f(dense[5:], labels[5:]), rtol=1e-6)
    assert "anova_score" not in adata.var


def test_anova_on_pbmc68k_reduced_matches_sklearn():
    adata = sc.datasets.pbmc68k_reduced()
    expected = sklearn_f(adata.X, adata.obs["bulk_labels"].astype(str))
    cr.pp.select_genes(adata, labels_key="bulk_labels", n_top=100)
    np.testing.assert_allclose(adata.var["anova_score"], expected, rtol=1e-6)


def test_anova_constant_within_classes_is_infinite():
    matrix = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [2.0, 2.0]])
    scores = anova_f_statistics(matrix, np.array([0, 0, 1, 1]))
    assert np.isinf(scores[0])
    np.testing.assert_allclose(scores[1], sklearn_f(matrix, [0, 0, 1, 1])[1], rtol=1e-12)


def test_top_mask_ranks_nan_lowest_and_keeps_gene_order_on_ties():
    mask = top_mask(np.array([np.nan, 2.0, 5.0, 2.0, np.nan]), 3)
    np.testing.assert_array_equal(mask, [False, True, True, True, False])
    np.testing.assert_array_equal(top_mask(np.array([1.0, 1.0, 1.0]), 2), [True, True, False])


@pytest.mark.parametrize("matrix_format", ["csr", "csc", "dense"])
def test_hvg_seurat_v3_matches_scanpy(matrix_format, dtype):
    adata = make_adata(as_format(synthetic_counts(200, 60, seed=4), matrix_format, dtype))
    expected = make_adata(synthetic_counts(200, 60, seed=4).astype(np.float64))
    sc.pp.highly_variable_genes(expected, flavor="seurat_v3", n_top_genes=15)
    cr.pp.select_genes(adata, method="hvg", n_top=15)
    np.testing.assert_array_equal(adata.var["highly_variable"], expected.var["highly_variable"])
    np.testing.assert_array_equal(adata.var["selected"], expected.var["highly_variable"])
    np.testing.assert_allclose(adata.var["variances_norm"], expected.var["variances_norm"])
    assert adata.uns["select_genes"]["params"]["flavor"] == "seurat_v3"


def test_hvg_seurat_on_log_data_and_seurat_v3_needs_counts():
    adata = make_adata(as_format(synthetic_counts(200, 60, seed=4), "csr", np.float32))
    cr.pp.log_normalize(adata)
    expected = adata.copy()
    sc.pp.highly_variable_genes(expected, flavor="seurat", n_top_genes=12)
    table = cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=12, inplace=False)
    np.testing.assert_array_equal(table["selected"], expected.var["highly_variable"])
    before = snapshot(adata)
    with pytest.raises(ValueError, match="non-integer"):
        cr.pp.select_genes(adata, method="hvg", n_top=12)
    assert_unchanged(adata, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "chi2", "labels_key": "cell_type"}, "method"),
        ({"labels_key": None}, "labels_key"),
        ({"labels_key": "missing"}, "labels_key"),
        ({"labels_key": "cell_type", "n_top": 0}, "n_top"),
    ],
)
def test_select_genes_bad_arguments(kwargs, message):
    adata = make_adata(synthetic_counts())
    before = snapshot(adata)
    with pytest.raises(ValueError, match=message):
        cr.pp.select_genes(adata, **kwargs)
    assert_unchanged(adata, before)


def test_hvg_accepts_integer_sparse_arrays():
    adata = make_adata(sparse.csr_array(synthetic_counts(200, 60, seed=4)))
    cr.pp.select_genes(adata, method="hvg", n_top=10)
    assert adata.var["selected"].sum() == 10
