import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellrep as cr


@pytest.fixture
def represented():
    rng = np.random.default_rng(0)
    labels = np.repeat(["T", "B", "NK"], 30)
    centers = {"T": 0.0, "B": 5.0, "NK": 10.0}
    representation = np.vstack([rng.normal(centers[label], 1.0, size=8) for label in labels])
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(90)])
    adata = ad.AnnData(np.zeros((90, 3), dtype=np.float32), obs=obs)
    adata.obsm["X_linear"] = representation
    return adata


@pytest.mark.slow
def test_embedding_computes_umap_of_the_representation(represented, tmp_path, assert_png):
    ax = cr.pl.embedding(represented, "X_linear", color="cell_type", save=tmp_path / "e.png")
    assert_png(tmp_path / "e.png")
    assert represented.obsm["X_umap_linear"].shape == (90, 2)
    assert represented.uns["neighbors_linear"]["params"]["use_rep"] == "X_linear"
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (90, 2)
    assert ax.get_title() == "cell_type"
    assert ax.get_xlabel() == "umap_linear1"
    assert len(represented.uns["cell_type_colors"]) == 3  # scanpy's palette was assigned
    # the stored UMAP is reused, not recomputed
    represented.obsm["X_umap_linear"][:] = 0.0
    ax = cr.pl.embedding(represented, "X_linear", color="cell_type")
    assert np.all(np.asarray(ax.collections[0].get_offsets()) == 0.0)


def test_embedding_2d_basis_is_drawn_directly(represented):
    represented.obsm["X_two"] = represented.obsm["X_linear"][:, :2]
    ax = cr.pl.embedding(represented, "X_two", color="cell_type")
    assert "X_umap_two" not in represented.obsm
    np.testing.assert_allclose(
        np.sort(ax.collections[0].get_offsets()[:, 0]), np.sort(represented.obsm["X_two"][:, 0])
    )


def test_embedding_unknown_basis(represented):
    with pytest.raises(ValueError, match="X_cellencoder"):
        cr.pl.embedding(represented, "X_cellencoder")
