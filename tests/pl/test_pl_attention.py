import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import cellrep as cr


@pytest.fixture
def attended():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.zeros((3, 40), dtype=np.float32))
    adata.var_names = [f"g{j}" for j in range(40)]
    adata.varp["gene_attention"] = rng.random((40, 40))
    return adata


def test_gene_attention_selected_genes(attended, tmp_path, assert_png, image_array):
    genes = ["g5", "g1", "g30"]
    ax = cr.pl.gene_attention(attended, genes=genes, save=tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    index = [5, 1, 30]
    np.testing.assert_allclose(image_array(ax), attended.varp["gene_attention"][np.ix_(index, index)])
    assert [t.get_text() for t in ax.get_xticklabels()] == genes
    assert ax.get_ylabel() == "query gene"


def test_gene_attention_top_genes_from_sparse(attended, image_array):
    attended.varp["gene_attention"] = sparse.csr_matrix(attended.varp["gene_attention"])
    ax = cr.pl.gene_attention(attended, n_top=12)
    assert image_array(ax).shape == (12, 12)


def test_gene_attention_errors(attended):
    with pytest.raises(ValueError, match=r"not in adata\.var_names"):
        cr.pl.gene_attention(attended, genes=["g1", "ZZZ"])
    with pytest.raises(ValueError, match="gene_attention"):
        cr.pl.gene_attention(attended, key="other")
