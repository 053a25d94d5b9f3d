"""The public-source loaders on tiny local files in the exact source formats (no network)."""

import gzip
import tarfile

import numpy as np
import pandas as pd
import pytest
from scipy import io, sparse

import cellrep as cr
from cellrep.datasets import _registry

GENES = ["INS", "GCG", "SST", "KRT19"]


def _write_baron_csv(path, sample, counts, clusters):
    table = pd.DataFrame(
        counts, columns=GENES, index=[f"{sample}_lib1.final_cell_{i:04d}" for i in range(len(counts))]
    )
    table.insert(0, "assigned_cluster", clusters)
    table.insert(0, "barcode", [f"ACGT{i:04d}" for i in range(len(counts))])
    with gzip.open(path, "wt") as handle:
        table.to_csv(handle)


@pytest.fixture
def baron_folder(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for accession, sample, clusters in [
        ("GSM2230761", "mouse1", ["beta", "B_cell", "alpha"]),
        ("GSM2230762", "mouse2", ["T_cell", "beta"]),
    ]:
        counts = rng.integers(0, 5, size=(len(clusters), len(GENES)))
        _write_baron_csv(tmp_path / f"{accession}_{sample}_umifm_counts.csv.gz", sample, counts, clusters)
        expected[sample] = (counts, clusters)
    return tmp_path, expected


@pytest.fixture
def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the loader tried to download although a local path was given")

    monkeypatch.setattr("pooch.retrieve", fail)


def test_baron_from_local_folder(baron_folder, no_network):
    folder, expected = baron_folder
    adata = cr.datasets.baron_pancreas("mouse", source="geo", path=folder)
    assert adata.shape == (5, len(GENES))
    assert sparse.issparse(adata.X)
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(
        adata.X.toarray(), np.vstack([expected["mouse1"][0], expected["mouse2"][0]])
    )
    assert list(adata.var_names) == GENES
    assert list(adata.obs["assigned_cluster"]) == ["beta", "B_cell", "alpha", "T_cell", "beta"]
    assert list(adata.obs["cell_type"]) == ["beta", "b_cell", "alpha", "t_cell", "beta"]
    assert list(adata.obs["batch"]) == ["mouse1"] * 3 + ["mouse2"] * 2
    assert set(adata.obs["species"]) == {"mouse"}
    assert adata.obs_names[0] == "mouse1_lib1.final_cell_0000"


def test_baron_single_file_and_file_list(baron_folder, no_network):
    folder, expected = baron_folder
    single = cr.datasets.baron_pancreas(
        "mouse", source="geo", path=folder / "GSM2230762_mouse2_umifm_counts.csv.gz"
    )
    np.testing.assert_array_equal(single.X.toarray(), expected["mouse2"][0])
    listed = cr.datasets.baron_pancreas("mouse", source="geo", path=sorted(folder.glob("*.csv.gz")))
    assert listed.n_obs == 5


def test_baron_rejects_wrong_input(tmp_path, no_network):
    with pytest.raises(ValueError, match="species"):
        cr.datasets.baron_pancreas("zebrafish", source="geo", path=tmp_path)
    with pytest.raises(ValueError, match="No"):
        cr.datasets.baron_pancreas("human", source="geo", path=tmp_path)
    bad = tmp_path / "GSM0_human1_umifm_counts.csv"
    pd.DataFrame({"x": [1]}, index=["c0"]).to_csv(bad)
    with pytest.raises(ValueError, match="assigned_cluster"):
        cr.datasets.read_baron_csv(bad)


def test_baron_downloads_every_registered_sample(baron_folder, monkeypatch, tmp_path):
    folder, _ = baron_folder
    calls = []

    def fake_retrieve(url, known_hash, fname, path):
        calls.append((url, known_hash, fname, path))
        return str(folder / fname)

    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    adata = cr.datasets.baron_pancreas("mouse", source="geo", data_dir=tmp_path / "cache")
    assert adata.n_obs == 5
    assert [call[0] for call in calls] == [source.url for source in _registry.BARON_SAMPLES["mouse"].values()]
    assert all(call[0].startswith("https://ftp.ncbi.nlm.nih.gov/geo/samples/") for call in calls)
    assert all(call[3] == tmp_path / "cache" for call in calls)


def _write_10x_v1(folder, counts):
    """Cell Ranger 1.x layout: genes × cells matrix.mtx, genes.tsv (id, symbol), barcodes.tsv."""
    folder.mkdir(parents=True)
    io.mmwrite(folder / "matrix.mtx", sparse.coo_matrix(counts.T))
    symbols = ["CD3D", "MS4A1", "CD3D", "LYZ"]  # a duplicate symbol, made unique by the loader
    with open(folder / "genes.tsv", "w") as handle:
        handle.writelines(f"ENSG{j:011d}\t{symbol}\n" for j, symbol in enumerate(symbols))
    with open(folder / "barcodes.tsv", "w") as handle:
        handle.writelines(f"AAAC{i:04d}-1\n" for i in range(counts.shape[0]))


@pytest.fixture
def pbmc_counts():
    return np.random.default_rng(1).integers(0, 6, size=(7, 4))


def _assert_pbmc(adata, counts):
    assert adata.shape == counts.shape
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert list(adata.var_names) == ["CD3D", "MS4A1", "CD3D-1", "LYZ"]
    assert adata.var["gene_ids"].iloc[1] == "ENSG00000000001"
    assert adata.obs_names[0] == "AAAC0000-1"
    assert set(adata.obs["batch"]) == {"pbmc3k"}
    assert set(adata.obs["species"]) == {"human"}


def test_pbmc3k_from_archive_and_folder(tmp_path, pbmc_counts, no_network):
    folder = tmp_path / "filtered_gene_bc_matrices" / "hg19"
    _write_10x_v1(folder, pbmc_counts)
    archive = tmp_path / "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tmp_path / "filtered_gene_bc_matrices", arcname="filtered_gene_bc_matrices")
    _assert_pbmc(cr.datasets.pbmc3k(source="10x", path=archive), pbmc_counts)
    _assert_pbmc(cr.datasets.pbmc3k(source="10x", path=tmp_path / "filtered_gene_bc_matrices"), pbmc_counts)
    with pytest.raises(ValueError, match=r"matrix\.mtx"):
        cr.datasets.pbmc3k(source="10x", path=_empty(tmp_path))


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_pbmc3k_download_uses_registry_url_and_hash(tmp_path, pbmc_counts, monkeypatch):
    archive_dir = tmp_path / "src"
    _write_10x_v1(archive_dir / "filtered_gene_bc_matrices" / "hg19", pbmc_counts)
    archive = archive_dir / "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(archive_dir / "filtered_gene_bc_matrices", arcname="filtered_gene_bc_matrices")
    calls = []

    def fake_retrieve(url, known_hash, fname, path):
        calls.append((url, known_hash, fname, path))
        return str(archive)

    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    monkeypatch.setenv("CELLREP_DATA_DIR", str(tmp_path / "cache"))
    _assert_pbmc(cr.datasets.pbmc3k(source="10x"), pbmc_counts)
    assert calls == [
        (
            "https://cf.10xgenomics.com/samples/cell-exp/1.1.0/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz",
            "md5:f76d73bf7a582aaf32b798bcae9574d3",
            "pbmc3k_filtered_gene_bc_matrices.tar.gz",
            tmp_path / "cache",
        )
    ]


def test_default_data_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLREP_DATA_DIR", str(tmp_path))
    assert cr.datasets.default_data_dir() == tmp_path
    monkeypatch.delenv("CELLREP_DATA_DIR")
    assert cr.datasets.default_data_dir().name == "cellrep"


def test_baron_header_only_file(tmp_path):
    path = tmp_path / "GSM2230760_human4_umifm_counts.csv.gz"
    _write_baron_csv(path, "human4", np.zeros((0, len(GENES)), dtype=int), [])
    adata = cr.datasets.read_baron_csv(path)
    assert adata.shape == (0, len(GENES))
    assert list(adata.var_names) == GENES
