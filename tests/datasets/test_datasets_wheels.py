"""The PyPI-wheel sources on tiny fake wheels with the real internal layout (no network)."""

import hashlib
import io
import os
import re
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import cellrep as cr
from cellrep.datasets import _registry

HUMAN_GENES = ["INS", "GCG", "SST", "NEWGENE"]
MOUSE_GENES = ["Ins1", "Gcg", "Sst", "Ppy"]
#: columns of CAME's gene_matches_1v1_human2mouse.csv; the one-to-many row must be dropped
ORTHOLOGS = pd.DataFrame(
    {
        "human.gene.name": ["INS", "GCG", "SST", "PPY"],
        "gene.name": ["Ins1", "Gcg", "Sst", "Ppy"],
        "human.homology.type": [
            "ortholog_one2one",
            "ortholog_one2one",
            "ortholog_one2many",
            "ortholog_one2one",
        ],
    }
)
FORMATS = {
    "csr": sparse.csr_matrix,
    "csc": sparse.csc_matrix,
    "dense": np.asarray,
}


def _h5ad_bytes(adata, tmp_path):
    file = tmp_path / "member.h5ad"
    adata.write_h5ad(file)
    data = file.read_bytes()
    file.unlink()
    return data


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _came_adata(species, counts, clusters, donors):
    genes = HUMAN_GENES if species == "human" else MOUSE_GENES
    obs = pd.DataFrame(
        {
            "cell_ontology_class": pd.Categorical(["some cell"] * len(clusters)),
            "cell_type1": pd.Categorical(clusters),
            "donor": pd.Categorical(donors),
            "library": pd.Categorical(["lib1"] * len(clusters)),
        },
        index=pd.Index([f"{donor}_lib1.final_cell_{i:04d}" for i, donor in enumerate(donors)], name="index"),
    )
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture(params=[(f, d) for f in FORMATS for d in (np.float32, np.float64, np.int64)], ids=str)
def came_wheel(request, tmp_path):
    """A fake came-0.1.13 wheel: came/sample_data.zip inside it holds the h5ad files and orthologs."""
    layout, dtype = request.param
    rng = np.random.default_rng(0)
    human_counts = rng.integers(0, 7, size=(3, len(HUMAN_GENES)))
    mouse_counts = rng.integers(0, 7, size=(2, len(MOUSE_GENES)))
    human = _came_adata(
        "human",
        FORMATS[layout](human_counts.astype(dtype)),
        ["beta", "t_cell", "alpha"],
        ["human1", "human2", "human2"],
    )
    mouse = _came_adata(
        "mouse", FORMATS[layout](mouse_counts.astype(dtype)), ["B_cell", "T_cell"], ["mouse1", "mouse2"]
    )
    sample_data = _zip_bytes(
        {
            "raw-Baron_human.h5ad": _h5ad_bytes(human, tmp_path),
            "raw-Baron_mouse.h5ad": _h5ad_bytes(mouse, tmp_path),
            "gene_matches_1v1_human2mouse.csv": ORTHOLOGS.to_csv(index=False),
        }
    )
    wheel = tmp_path / "came-0.1.13-py3-none-any.whl"
    wheel.write_bytes(_zip_bytes({"came/__init__.py": "", "came/sample_data.zip": sample_data}))
    return wheel, {"human": human_counts, "mouse": mouse_counts}


@pytest.fixture
def desc_wheel(tmp_path):
    counts = np.random.default_rng(2).integers(0, 5, size=(3, 4))
    symbols = ["CD3D", "MS4A1", "CD3D", "LYZ"]
    var = pd.DataFrame(
        {"gene_ids": [f"ENSG{j:011d}" for j in range(4)], "gene_symbols": symbols},
        index=["CD3D", "MS4A1", "CD3D-dup", "LYZ"],
    )
    barcodes = [f"AAAC{i:04d}-1" for i in range(3)]
    stored = ad.AnnData(
        sparse.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame({"barcode": barcodes}, index=barcodes),
        var=var,
    )
    wheel = tmp_path / "desc-2.1.1-py3-none-any.whl"
    wheel.write_bytes(
        _zip_bytes({"desc/__init__.py": "", "desc/datasets/pbmc.h5ad": _h5ad_bytes(stored, tmp_path)})
    )
    return wheel, counts


@pytest.fixture
def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the loader tried to download")

    monkeypatch.setattr("pooch.HTTPDownloader.__call__", fail)


def _sha256(path):
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_baron(adata, species, counts):
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert set(adata.obs["species"]) == {species}
    if species == "human":
        assert list(adata.var_names) == HUMAN_GENES
        assert list(adata.obs["cell_type"]) == ["beta", "t_cell", "alpha"]
        assert list(adata.obs["batch"]) == ["human1", "human2", "human2"]
        # SST's row is one-to-many and NEWGENE has no row: both get ''
        assert list(adata.var["mouse_ortholog"]) == ["Ins1", "Gcg", "", ""]
    else:
        assert list(adata.var_names) == MOUSE_GENES
        assert list(adata.obs["assigned_cluster"]) == ["B_cell", "T_cell"]
        assert list(adata.obs["cell_type"]) == ["b_cell", "t_cell"]
        assert list(adata.obs["batch"]) == ["mouse1", "mouse2"]
        assert list(adata.var["human_ortholog"]) == ["INS", "GCG", "", "PPY"]
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert adata.obs_names[0].endswith("final_cell_0000")
    assert "came==0.1.13" in adata.uns["source"]


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_baron_from_local_wheel(came_wheel, species, no_network):
    wheel, counts = came_wheel
    adata = cr.datasets.baron_pancreas(species, path=wheel)
    _assert_baron(adata, species, counts[species])
    assert sorted(p.name for p in wheel.parent.iterdir()) == [wheel.name]  # extracted into a temp dir


def test_baron_download_verifies_and_caches(came_wheel, tmp_path, monkeypatch, no_network):
    """A verified wheel in the cache is used by pooch without downloading; members are extracted once."""
    wheel, counts = came_wheel
    cache = tmp_path / "cache"
    cache.mkdir()
    cached_wheel = cache / _registry.CAME_WHEEL.fname
    cached_wheel.write_bytes(wheel.read_bytes())
    monkeypatch.setattr(
        "cellrep.datasets._baron.CAME_WHEEL", _registry.Source(_registry.CAME_WHEEL.url, _sha256(wheel))
    )
    _assert_baron(cr.datasets.baron_pancreas("mouse", data_dir=cache), "mouse", counts["mouse"])
    extracted = cache / f"{cached_wheel.name}.unzip" / "raw-Baron_mouse.h5ad"
    first_extraction = extracted.stat().st_mtime_ns
    monkeypatch.setenv("CELLREP_DATA_DIR", str(cache))
    _assert_baron(cr.datasets.baron_pancreas("human"), "human", counts["human"])
    assert extracted.stat().st_mtime_ns == first_extraction


def test_baron_download_rejects_a_mismatching_file(came_wheel, tmp_path, monkeypatch, no_network):
    """With the real pinned hash, the fake wheel in the cache fails verification, so pooch re-downloads."""
    wheel, _ = came_wheel
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / _registry.CAME_WHEEL.fname).write_bytes(wheel.read_bytes())
    with pytest.raises(AssertionError, match="tried to download"):
        cr.datasets.baron_pancreas("mouse", data_dir=cache)


def test_extract_member_refreshes_when_the_archive_is_newer(tmp_path):
    archive = tmp_path / "outer.zip"
    archive.write_bytes(_zip_bytes({"inner.zip": _zip_bytes({"a.txt": "first"})}))
    folder = tmp_path / "out"
    extracted = _registry.extract_member(archive, ["inner.zip", "a.txt"], folder)
    assert extracted == folder / "a.txt"
    assert extracted.read_text() == "first"
    archive.write_bytes(_zip_bytes({"inner.zip": _zip_bytes({"a.txt": "second"})}))
    newer = extracted.stat().st_mtime + 10
    os.utime(archive, (newer, newer))
    assert _registry.extract_member(archive, ["inner.zip", "a.txt"], folder).read_text() == "second"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "inner.zip"]  # no partial files left


def test_pbmc3k_from_local_wheel(desc_wheel, no_network):
    wheel, counts = desc_wheel
    adata = cr.datasets.pbmc3k(path=wheel)
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert list(adata.var_names) == ["CD3D", "MS4A1", "CD3D-1", "LYZ"]
    assert list(adata.var.columns) == ["gene_ids"]
    assert adata.var["gene_ids"].iloc[2] == "ENSG00000000002"
    assert list(adata.obs_names) == [f"AAAC{i:04d}-1" for i in range(3)]
    assert set(adata.obs["batch"]) == {"pbmc3k"}
    assert set(adata.obs["species"]) == {"human"}
    assert "desc==2.1.1" in adata.uns["source"]


def test_pbmc3k_download_verifies(desc_wheel, tmp_path, monkeypatch, no_network):
    wheel, counts = desc_wheel
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / _registry.DESC_WHEEL.fname).write_bytes(wheel.read_bytes())
    monkeypatch.setattr(
        "cellrep.datasets._pbmc3k.DESC_WHEEL", _registry.Source(_registry.DESC_WHEEL.url, _sha256(wheel))
    )
    np.testing.assert_array_equal(cr.datasets.pbmc3k(data_dir=cache).X.toarray(), counts)


def test_registry_pins_pypi_wheels_by_sha256():
    for source, name in [
        (_registry.CAME_WHEEL, "came-0.1.13-py3-none-any.whl"),
        (_registry.DESC_WHEEL, "desc-2.1.1-py3-none-any.whl"),
    ]:
        assert source.url.startswith("https://files.pythonhosted.org/packages/")
        assert source.fname == name
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", source.known_hash)


def test_wheel_sources_reject_bad_input(tmp_path, desc_wheel, no_network):
    wheel, _ = desc_wheel
    with pytest.raises(ValueError, match="source must be"):
        cr.datasets.baron_pancreas("mouse", source="ftp", path=tmp_path)
    with pytest.raises(ValueError, match="source must be"):
        cr.datasets.pbmc3k(source="geo", path=tmp_path)
    with pytest.raises(TypeError, match="single file"):
        cr.datasets.baron_pancreas("mouse", path=[wheel])
    not_a_zip = tmp_path / "came.whl"
    not_a_zip.write_text("plain text")
    with pytest.raises(ValueError, match="not a zip archive"):
        cr.datasets.baron_pancreas("mouse", path=not_a_zip)
    with pytest.raises(ValueError, match=r"does not contain 'came/sample_data\.zip'"):
        cr.datasets.baron_pancreas("mouse", path=wheel)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["came.whl", wheel.name]
    )  # nothing extracted here
