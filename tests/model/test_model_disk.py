"""CellEncoder on counts that stay on disk: backed h5ad and lazily loaded (dask) AnnData."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse
from tests.model.model_fixtures import run_script, single_torch_thread  # noqa: F401

import cellrep as cr
from cellrep.model import CellEncoder
from cellrep.model import _data as model_data

SCRIPT = Path(__file__).with_name("disk_training.py")
TINY = {"n_layers": 1, "d_model": 8, "n_heads": 2, "max_seq_len": 8, "n_token_genes": 40}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}
MiB = 2**20


def write_counts(path: Path, n_cells: int, n_genes: int, per_cell: int, matrix_format: str = "csr") -> int:
    """Random integer counts, ``per_cell`` stored entries per cell, written as h5ad; returns the CSR bytes."""
    rng = np.random.default_rng(0)
    indptr = np.arange(n_cells + 1, dtype=np.int64) * per_cell
    indices = np.sort(rng.integers(0, n_genes, size=(n_cells, per_cell)), axis=1).astype(np.int32)
    values = rng.integers(1, 10, size=n_cells * per_cell).astype(np.float32)
    counts = sparse.csr_matrix((values, indices.ravel(), indptr), shape=(n_cells, n_genes))
    counts.sum_duplicates()
    adata = ad.AnnData(counts if matrix_format == "csr" else counts.tocsc())
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.obs["cell_type"] = np.array(["a", "b", "c"])[np.arange(n_cells) % 3]
    adata.write_h5ad(path)
    return counts.data.nbytes + counts.indices.nbytes + counts.indptr.nbytes


@pytest.fixture(scope="module")
def large_file(tmp_path_factory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("large") / "large.h5ad"
    return path, write_counts(path, 200_000, 2_000, per_cell=50)


@pytest.mark.parametrize("mode", ["backed", "lazy"])
def test_training_from_a_file_on_disk_keeps_peak_memory_far_below_the_matrix(large_file, mode):
    n_cells, n_genes = 200_000, 2_000
    path, csr_bytes = large_file
    dense_bytes = n_cells * n_genes * 4  # float32: 1.6 GB
    # lazy: 2000-cell chunks, the default window of 8 chunks (16 000 cells, ~6.4 MB of CSR)
    report = json.loads(run_script(SCRIPT, path, mode, 5).strip().splitlines()[-1])
    assert report["steps"] == 5
    assert report["n_obs"] == n_cells
    # a tenth of the dense matrix (160 MB); measured ~130 MB: obs/var names (~28), the
    # 20 000-cell statistics sample (~26) and the PCA of the initialisation (~75), none of
    # which grows with the minibatches read
    bound = dense_bytes / 10
    assert report["peak_increase_bytes"] < bound, report
    assert csr_bytes > 75 * MiB  # even the CSR matrix in memory would be 80 MB


@pytest.fixture
def small_file(tmp_path) -> Path:
    path = tmp_path / "small.h5ad"
    write_counts(path, 600, 80, per_cell=20)
    return path


def encoder(adata) -> CellEncoder:
    CellEncoder.setup_anndata(adata, labels_key="cell_type")
    torch.manual_seed(0)
    return CellEncoder(adata, **TINY)


@pytest.mark.parametrize("mode", ["backed", "lazy"])
def test_an_on_disk_anndata_initialises_and_embeds_like_the_loaded_one(small_file, mode):
    in_memory = encoder(ad.read_h5ad(small_file))
    on_disk_adata = (
        ad.read_h5ad(small_file, backed="r") if mode == "backed" else cr.read_lazy(small_file, chunk_size=64)
    )
    on_disk = encoder(on_disk_adata)
    # fewer cells than the statistics sample: the initialisation saw every cell, as in memory
    for key, value in in_memory.module.state_dict().items():
        assert torch.equal(value, on_disk.module.state_dict()[key]), key
    np.testing.assert_allclose(
        on_disk.get_latent_representation(), in_memory.get_latent_representation(), rtol=1e-5, atol=1e-6
    )
    on_disk.train(max_steps=3, batch_size=64, train_size=1.0, **QUIET)
    assert on_disk.trainer.global_step == 3
    assert np.isfinite(on_disk.history["train_loss"].to_numpy()).all()


def test_statistics_come_from_a_bounded_sample_of_a_larger_file(small_file, monkeypatch):
    monkeypatch.setattr(model_data, "STATISTICS_SAMPLE", 100)
    adata = ad.read_h5ad(small_file, backed="r")
    model = encoder(adata)
    counts = ad.read_h5ad(small_file).X
    rows = np.sort(np.random.default_rng(model_data.SAMPLE_SEED).choice(600, size=100, replace=False))
    sample = model._statistics_counts()
    assert sample.shape == (100, 80)
    assert (sample != counts[rows]).nnz == 0


def test_on_disk_data_the_minibatches_cannot_read_is_refused_with_the_fix(tmp_path, small_file):
    from anndata.experimental import read_lazy

    with pytest.raises(TypeError, match=r"cr\.read_lazy"):
        CellEncoder.setup_anndata(read_lazy(small_file))
    csc_path = tmp_path / "csc.h5ad"
    write_counts(csc_path, 50, 10, per_cell=3, matrix_format="csc")
    with pytest.raises(TypeError, match="CSR"):
        CellEncoder.setup_anndata(ad.read_h5ad(csc_path, backed="r"))
