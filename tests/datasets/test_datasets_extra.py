"""Loaders of the extra benchmark datasets: tiny files with the real layout, and the real files when present."""

import hashlib
import zipfile

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import cellrep as cr
from cellrep.datasets import _registry
from cellrep.datasets._extra import _INFERCNVPY_MEMBER

#: Where the real files may be: the loaders' download cache ($CELLREP_DATA_DIR); tests skip without them.
EXTRA_DIRS = [cr.datasets.default_data_dir()]


def _write_scdcc(path, counts, codes):
    with h5py.File(path, "w") as stored:
        stored["X"], stored["Y"] = counts, codes


def test_scdcc_layout(tmp_path):
    counts = np.array([[1, 0, 3], [0, 2, 0]], dtype=np.float32)
    _write_scdcc(tmp_path / "x.h5", counts, np.array([3.0, 1.0]))
    adata = cr.datasets.scdcc_dataset("worm_neuron", path=tmp_path / "x.h5")
    assert sparse.isspmatrix_csr(adata.X)
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert list(adata.obs["cell_type"]) == ["type3", "type1"]
    assert list(adata.var_names) == ["gene0", "gene1", "gene2"]
    assert adata.obs["species"].iloc[0] == "C. elegans"
    assert "ttgump/scDCC" in adata.uns["source"]
    with pytest.raises(ValueError, match="name must be one of"):
        cr.datasets.scdcc_dataset("nope", path=tmp_path / "x.h5")
    with h5py.File(tmp_path / "bad.h5", "w") as stored:
        stored["counts"] = counts
    with pytest.raises(ValueError, match="needs the datasets 'X'"):
        cr.datasets.scdcc_dataset("cbmc", path=tmp_path / "bad.h5")


def test_oligodendroglioma_layout(tmp_path):
    labels = ["malignant_93", "Oligodendrocytes (non-malignant)", "Microglia/Macrophage", "malignant_MGH36"]
    stored = ad.AnnData(
        sparse.csr_matrix(np.array([[1.4, 0.2], [0.0, 2.6], [3.0, 0.0], [0.5, 0.49]])),
        obs=pd.DataFrame(
            {"cell_type": labels}, index=["MGH93_P1_A1", "MGH53_P2_B1", "MGH54_P3_C1", "MGH36_P1_D1"]
        ),
        var=pd.DataFrame(index=["GENE1", "GENE2"]),
    )
    member = tmp_path / "member.h5ad"
    stored.write_h5ad(member)
    wheel = tmp_path / "infercnvpy-0.6.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(member, _INFERCNVPY_MEMBER)
    adata = cr.datasets.oligodendroglioma(path=wheel)
    np.testing.assert_array_equal(adata.X.toarray(), [[1, 0], [0, 3], [3, 0], [0, 0]])  # rounded counts
    assert list(adata.obs["cell_type"]) == labels
    assert list(adata.obs["cell_type_coarse"]) == [
        "malignant",
        "oligodendrocyte",
        "microglia/macrophage",
        "malignant",
    ]
    assert list(adata.obs["batch"]) == ["MGH93", "MGH53", "MGH54", "MGH36"]


def _local(fname):
    for folder in EXTRA_DIRS:
        if (folder / fname).exists():
            return folder / fname
    pytest.skip(f"{fname} is not available locally")


@pytest.mark.parametrize(
    ("name", "shape", "n_types"),
    [
        ("human_kidney", (5685, 2000), 11),
        ("mouse_bladder", (2100, 20670), 16),
        ("worm_neuron", (4186, 13488), 10),
        ("cbmc", (8617, 2000), 15),
    ],
)
def test_real_scdcc_files(name, shape, n_types):
    source = _registry.SCDCC_FILES[name]
    path = _local(source.fname)
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == source.known_hash
    adata = cr.datasets.scdcc_dataset(name, path=path)
    assert adata.shape == shape
    assert adata.obs["cell_type"].nunique() == n_types
    assert np.array_equal(adata.X.data, np.round(adata.X.data))


def test_real_oligodendroglioma():
    path = _local(_registry.INFERCNVPY_WHEEL.fname)
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == _registry.INFERCNVPY_WHEEL.known_hash
    adata = cr.datasets.oligodendroglioma(path=path)
    assert adata.shape == (184, 9450)
    assert adata.obs["cell_type"].value_counts().to_dict()["malignant_MGH36"] == 33
    assert adata.obs["batch"].nunique() == 5
