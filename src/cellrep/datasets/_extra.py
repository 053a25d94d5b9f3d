"""More labelled datasets for the benchmark: other tissues, platforms and species, with pinned sources.

Every loader downloads its file once with :mod:`pooch` (SHA256-verified) into ``data_dir``
(default :func:`~cellrep.datasets.default_data_dir`), or reads a local copy given as ``path``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from ._registry import INFERCNVPY_WHEEL, SCDCC_FILES, extract_member, fetch

_INFERCNVPY_MEMBER = "infercnvpy/datasets/data/oligodendroglioma.h5ad"

#: What each scDCC file holds: (study, platform, species, tissue).
SCDCC_DATASETS: dict[str, tuple[str, str, str, str]] = {
    "human_kidney": (
        "Young et al. 2018, Science 361:594",
        "10x Chromium",
        "human",
        "kidney (2 000 most variable genes)",
    ),
    "mouse_bladder": (
        "Han et al. 2018, Cell 172:1091 (Mouse Cell Atlas)",
        "Microwell-seq",
        "mouse",
        "bladder (2 100 cells)",
    ),
    "worm_neuron": ("Cao et al. 2017, Science 357:661", "sci-RNA-seq", "C. elegans", "neurons"),
    "cbmc": (
        "Stoeckius et al. 2017, Nat Methods 14:865",
        "CITE-seq (droplets)",
        "human",
        "cord blood (2 000 genes)",
    ),
}


def scdcc_dataset(
    name: str, *, path: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
):
    """A labelled count matrix shipped in the GitHub repository of scDCC (Tian et al. 2021).

    Each file holds raw integer counts ``X`` and the cell-type codes ``Y`` of the original
    study's annotation, without gene or type names. They serve within-dataset tasks (another
    tissue, platform or species), not cross-dataset ones, where genes must be matched by name.

    Parameters
    ----------
    name
        One of :data:`SCDCC_DATASETS`: ``'human_kidney'`` (10x, 5 685 cells × 2 000 genes,
        11 types), ``'mouse_bladder'`` (Microwell-seq, 2 100 × 20 670, 16 types),
        ``'worm_neuron'`` (sci-RNA-seq, 4 186 × 13 488, 10 types) or ``'cbmc'`` (CITE-seq RNA,
        8 617 × 2 000, 15 types).
    path
        A local copy of the ``.h5`` file to read instead of downloading.
    data_dir
        Download cache folder.

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts, ``obs['cell_type']`` (``'type<code>'``),
    ``obs['batch']`` (one value), ``obs['species']``, genes named ``gene0``, ``gene1``, … and
    the provenance in ``uns['source']``.
    """
    import anndata as ad
    import h5py

    if name not in SCDCC_DATASETS:
        raise ValueError(f"name must be one of {sorted(SCDCC_DATASETS)}, got {name!r}.")
    file = Path(path) if path is not None else fetch(SCDCC_FILES[name], data_dir)
    with h5py.File(file, "r") as stored:
        if "X" not in stored or "Y" not in stored:
            raise ValueError(
                f"{file} is not an scDCC file: it needs the datasets 'X' (counts) and 'Y' (labels)."
            )
        counts, codes = stored["X"][:], stored["Y"][:]
    study, platform, species, tissue = SCDCC_DATASETS[name]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{int(code)}" for code in codes]),
            "batch": pd.Categorical([name] * codes.size),
            "species": pd.Categorical([species] * codes.size),
        },
        index=[f"{name}_{i}" for i in range(codes.size)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(counts.shape[1])])
    adata = ad.AnnData(sparse.csr_matrix(counts, dtype=np.float32), obs=obs, var=var)
    adata.uns["source"] = (
        f"{study}; {platform}, {species} {tissue}; from github.com/ttgump/scDCC "
        f"({SCDCC_FILES[name].url.split('/raw/')[1]}; Apache-2.0)"
    )
    return adata


def oligodendroglioma(*, path: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
    """184 oligodendroglioma cells of Tirosh et al. 2016 (Nature 539:309), Smart-seq2, 4 patients.

    From the wheel of infercnvpy 0.6.1 on PyPI (BSD-3-Clause), SHA256-pinned, which ships
    ``oligodendroglioma.h5ad`` (the inferCNV example data, 9 450 genes). Its values are
    down-sampled, non-integer read counts; they are **rounded** to integers here so that every
    count-based method can read them.

    Parameters
    ----------
    path
        A local copy of ``infercnvpy-0.6.1-py3-none-any.whl``.
    data_dir
        Download cache folder.

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts and

    - ``obs['cell_type']``: the original 6 labels (malignant cells by patient: ``malignant_MGH36``
      …, ``Oligodendrocytes (non-malignant)``, ``Microglia/Macrophage``);
    - ``obs['cell_type_coarse']``: ``'malignant'``, ``'oligodendrocyte'`` or ``'microglia/macrophage'``;
    - ``obs['batch']``: the patient (``MGH36``, ``MGH53``, ``MGH54``, ``MGH93``, ``MGH97``; from the
      cell name or the malignant label). Non-malignant cells come from 3 patients only, so
      leave-one-patient-out is not meaningful on this small set.
    """
    import anndata as ad

    if path is None:
        wheel = fetch(INFERCNVPY_WHEEL, data_dir)
        file = extract_member(wheel, [_INFERCNVPY_MEMBER], wheel.with_name(f"{wheel.name}.unzip"))
        stored = ad.read_h5ad(file)
    else:
        with tempfile.TemporaryDirectory() as folder:
            stored = ad.read_h5ad(extract_member(Path(path), [_INFERCNVPY_MEMBER], Path(folder)))
    counts = sparse.csr_matrix(stored.X, dtype=np.float64)
    counts.data = np.round(counts.data)
    counts.eliminate_zeros()
    fine = stored.obs["cell_type"].astype(str)
    coarse = np.where(
        fine.str.startswith("malignant"),
        "malignant",
        np.where(fine.str.startswith("Oligodendrocytes"), "oligodendrocyte", "microglia/macrophage"),
    )
    patients = [
        label.split("_", 1)[1] if label.startswith("malignant") else cell.split("_", 1)[0]
        for label, cell in zip(fine, stored.obs_names, strict=True)
    ]
    patients = ["MGH" + patient if patient.isdigit() else patient for patient in patients]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(fine),
            "cell_type_coarse": pd.Categorical(coarse),
            "batch": pd.Categorical(patients),
            "species": pd.Categorical(["human"] * stored.n_obs),
        },
        index=stored.obs_names.astype(str),
    )
    adata = ad.AnnData(
        sparse.csr_matrix(counts, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=stored.var_names.astype(str)),
    )
    adata.var_names_make_unique()
    adata.uns["source"] = (
        "Tirosh et al. 2016, Nature 539:309 (GSE70630), Smart-seq2; the inferCNV example data from PyPI "
        f"infercnvpy==0.6.1 ({_INFERCNVPY_MEMBER}; BSD-3-Clause), counts rounded"
    )
    return adata
