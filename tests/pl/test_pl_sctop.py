import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellrep as cr


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = np.repeat(["alpha", "beta", "delta", "gamma"], 10)
    types = ["alpha", "beta", "ductal"]
    scores = rng.normal(size=(40, 3))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(40)])
    adata = ad.AnnData(np.zeros((40, 2), dtype=np.float32), obs=obs)
    adata.obsm["X_sctop"] = scores
    adata.uns["X_sctop"] = {"cell_types": np.array(types)}
    return adata


def test_sctop_heatmap_is_mean_per_label(scored, tmp_path, assert_png, image_array):
    figure = cr.pl.sctop_scores(scored, groupby="cell_type", save=tmp_path / "s.png")
    assert_png(tmp_path / "s.png")
    ax = figure.axes[0]
    expected = (
        pd.DataFrame(scored.obsm["X_sctop"]).groupby(scored.obs["cell_type"].to_numpy()).mean().to_numpy()
    )
    values = image_array(ax)
    assert values.shape == (4, 3)
    np.testing.assert_allclose(values, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["alpha", "beta", "ductal"]
    assert ax.get_ylabel() == "cell_type"


def test_sctop_two_type_scatter_uses_palette(scored):
    scored.uns["cell_type_colors"] = np.array(["#000000", "#111111", "#222222", "#333333"])
    figure = cr.pl.sctop_scores(scored, groupby="cell_type", types=("alpha", "beta"))
    scatter_ax = figure.axes[1]
    assert scatter_ax.get_xlabel() == "alpha score"
    assert scatter_ax.get_ylabel() == "beta score"
    assert len(scatter_ax.collections) == 4
    first = scatter_ax.collections[0]
    np.testing.assert_allclose(first.get_offsets(), scored.obsm["X_sctop"][:10, :2])
    np.testing.assert_allclose(first.get_facecolor()[0][:3], [0, 0, 0])


def test_sctop_errors(scored):
    with pytest.raises(ValueError, match="two reference types"):
        cr.pl.sctop_scores(scored, groupby="cell_type", types=("alpha", "acinar"))
    del scored.uns["X_sctop"]
    with pytest.raises(ValueError, match="cell_types"):
        cr.pl.sctop_scores(scored, groupby="cell_type")


def test_sctop_scores_from_dataframe(scored, image_array):
    scored.obsm["X_sctop"] = pd.DataFrame(
        scored.obsm["X_sctop"], index=scored.obs_names, columns=["x", "y", "z"]
    )
    del scored.uns["X_sctop"]
    figure = cr.pl.sctop_scores(scored, groupby="cell_type")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["x", "y", "z"]
    assert image_array(figure.axes[0]).shape == (4, 3)
