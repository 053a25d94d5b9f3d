"""Every Python code block of README.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import pytest
from tests.conftest import SHARED_DATA

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
DOWNLOADS = "cr.datasets.baron_pancreas"


def test_readme_has_the_examples():
    assert len(BLOCKS) == 2
    assert "obs['X_sctop_label']" not in README.read_text()  # the label column is obs['sctop_label']


def run_block(code: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("index", [i for i, block in enumerate(BLOCKS) if DOWNLOADS not in block])
def test_offline_block_runs(index):
    namespace = run_block(BLOCKS[index])
    counts = namespace["counts"]
    assert "X_sctop" in counts.obsm
    assert "sctop_label" in counts.obs
    assert "X_umap" in namespace["adata"].obsm


@pytest.mark.shared_data
@pytest.mark.parametrize("index", [i for i, block in enumerate(BLOCKS) if DOWNLOADS in block])
def test_download_block_runs_on_the_local_copy(index, monkeypatch):
    """Tests never download: the loader is served the same data from ../shared/data."""
    files = {"human": SHARED_DATA / "baron_human_subset.h5ad", "mouse": SHARED_DATA / "baron_mouse.h5ad"}
    if not all(path.exists() for path in files.values()):
        pytest.skip("../shared/data is absent")
    import cellrep.datasets

    monkeypatch.setattr(
        cellrep.datasets, "baron_pancreas", lambda species, **kwargs: ad.read_h5ad(files[species])
    )
    namespace = run_block(BLOCKS[index])
    predictions = namespace["mouse"].obs[["cell_type_pred", "cell_type_confidence"]]
    assert predictions["cell_type_pred"].notna().mean() > 0.5
