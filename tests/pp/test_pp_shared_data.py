"""cr.pp on the real PBMC3k counts (../shared/data) against scanpy and sklearn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scanpy as sc
from sklearn.feature_selection import f_classif
from tests.conftest import read_shared

import cellrep as cr


@pytest.mark.shared_data
def test_pbmc3k_pipeline_matches_scanpy_and_sklearn():
    adata = read_shared("pbmc3k")[::3]  # every third cell keeps the NUMBA_DISABLE_JIT=1 run short
    adata = adata[:, np.asarray(adata.X.sum(axis=0)).ravel() > 0].copy()
    adata.layers["counts"] = adata.X.copy()
    expected = adata.copy()
    expected.X = expected.X.toarray()  # scanpy's CSR kernel fails under NUMBA_DISABLE_JIT=1
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    cr.pp.log_normalize(adata)
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    np.testing.assert_allclose(adata.X.toarray(), expected.X, rtol=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = f_classif(adata.X.astype(np.float64), adata.obs["cell_type"].astype(str).to_numpy())[0]
    cr.pp.select_genes(adata, labels_key="cell_type", n_top=500)
    np.testing.assert_allclose(adata.var["anova_score"], reference, rtol=1e-6)

    subset = adata[:, adata.var["selected"].to_numpy()].copy()
    dense = subset.copy()
    dense.X = dense.X.toarray()
    sc.pp.scale(dense)
    cr.pp.scale(subset)
    assert subset.uns["scale"]["params"]["implicit_center"]
    centred = subset.X.toarray() - (subset.var["mean"] / subset.var["std"]).to_numpy()
    np.testing.assert_allclose(centred, dense.X, rtol=1e-5, atol=1e-5)

    residuals = subset.copy()
    sc.experimental.pp.normalize_pearson_residuals(residuals, layer="counts", clip=10.0)
    implicit = cr.pp.pearson_residuals(subset, layer="counts", clip=10.0, inplace=False)
    np.testing.assert_allclose(np.asarray(implicit), residuals.layers["counts"], rtol=1e-5, atol=1e-5)
    cr.pp.pearson_residuals(subset, layer="counts", clip=10.0, dense=True)
    np.testing.assert_allclose(subset.layers["counts"], residuals.layers["counts"], rtol=1e-5, atol=1e-5)
