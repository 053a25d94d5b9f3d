import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

import cellrep as cr


@pytest.fixture(scope="module")
def default_adata():
    return cr.datasets.pbmc68k_reduced_counts()


def test_default_is_integer_csr_counts(default_adata):
    assert default_adata.shape == (700, 765)
    assert sparse.isspmatrix_csr(default_adata.X) or isinstance(default_adata.X, sparse.csr_array)
    assert default_adata.X.dtype == np.float32
    values = default_adata.X.data
    assert values.min() >= 1  # explicit zeros removed, no negatives
    np.testing.assert_array_equal(values, np.round(values))


def test_default_keeps_labels_and_names(default_adata):
    reference = sc.datasets.pbmc68k_reduced()
    np.testing.assert_array_equal(default_adata.var_names, reference.raw.var_names)
    np.testing.assert_array_equal(default_adata.obs["bulk_labels"], reference.obs["bulk_labels"])
    np.testing.assert_array_equal(default_adata.obs["cell_type"], reference.obs["bulk_labels"])
    assert default_adata.obs["cell_type"].nunique() == 10
    assert len(default_adata.uns["cell_type_colors"]) == 10
    np.testing.assert_allclose(default_adata.obs["total_counts_all_genes"], reference.obs["n_counts"])


def test_default_renormalises_back_to_scanpy_raw(default_adata):
    """log1p(counts / n_counts * 1e4) reproduces scanpy's raw.X up to the rounding of the counts."""
    reference = sc.datasets.pbmc68k_reduced()
    library_size = default_adata.obs["total_counts_all_genes"].to_numpy()
    renormalised = np.log1p(default_adata.X.toarray() / library_size[:, None] * 1e4)
    original = reference.raw.X.toarray()
    np.testing.assert_array_equal(renormalised > 0, original > 0)
    np.testing.assert_allclose(renormalised, original, atol=0.05)
    # the exact inverse lies within 0.1 of the rounded integers
    unrounded = np.expm1(original.astype(np.float64)) * library_size[:, None] / 1e4
    assert np.abs(unrounded - default_adata.X.toarray()).max() < 0.1
