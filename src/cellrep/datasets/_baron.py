"""Baron et al. 2016 pancreas atlas (GEO GSE84133), human and mouse."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._registry import BARON_SAMPLES, fetch

_METADATA_COLUMNS = ("barcode", "assigned_cluster")
_ROWS_PER_CHUNK = 500


def read_baron_csv(path: str | os.PathLike, *, batch: str | None = None):
    """Parse one GSE84133 ``*_umifm_counts.csv(.gz)`` file into an AnnData of counts.

    The file has one row per cell: an unnamed cell id, ``barcode``, ``assigned_cluster``, then one
    column of UMI counts per gene. It is read in chunks so no dense cells × genes table is held.

    Parameters
    ----------
    path
        The CSV file, gzip-compressed or not.
    batch
        Value for ``obs['batch']``; defaults to the sample name in the file name (``'human1'`` for
        ``GSM2230757_human1_umifm_counts.csv.gz``).
    """
    import anndata as ad

    path = Path(path)
    if batch is None:
        parts = path.name.split("_")
        batch = parts[1] if len(parts) > 2 else path.name.split(".")[0]
    header = pd.read_csv(path, index_col=0, nrows=0).columns
    missing = [column for column in _METADATA_COLUMNS if column not in header]
    if missing:
        raise ValueError(
            f"{path} is not a GSE84133 count table: columns {missing} are missing "
            "(expected a cell id, 'barcode', 'assigned_cluster', then one column per gene)."
        )
    genes = header.drop(list(_METADATA_COLUMNS))
    blocks = [sparse.csr_matrix((0, len(genes)), dtype=np.float32)]
    metadata = [pd.DataFrame(columns=list(_METADATA_COLUMNS))]
    for chunk in pd.read_csv(path, index_col=0, chunksize=_ROWS_PER_CHUNK):
        blocks.append(sparse.csr_matrix(chunk[genes].to_numpy(dtype=np.float32)))
        metadata.append(chunk[list(_METADATA_COLUMNS)])
    obs = pd.concat(metadata)
    obs.index = obs.index.astype(str)
    obs.index.name = None
    obs["cell_type"] = obs["assigned_cluster"].str.lower()
    obs["batch"] = batch
    counts = sparse.vstack(blocks, format="csr")
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))


def baron_pancreas(
    species: Literal["human", "mouse"] = "human",
    *,
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    data_dir: str | os.PathLike | None = None,
):
    """Baron et al. 2016 pancreatic islet cells (inDrop UMI counts, GEO GSE84133).

    Without ``path`` the per-donor CSV files are downloaded once with :mod:`pooch` into
    ``data_dir`` (default: :func:`~cellrep.datasets.default_data_dir`) and read from there.

    Parameters
    ----------
    species
        ``'human'`` (4 donors, 8569 cells, 20125 genes) or ``'mouse'`` (2 strains, 1886 cells).
    path
        Local copies to use instead of downloading: a folder holding the ``GSM..._umifm_counts.csv.gz``
        files of ``species``, one such file, or a list of them.
    data_dir
        Download cache folder.

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts in ``X``, ``obs['cell_type']`` (Baron's
    ``assigned_cluster`` lower-cased, so ``B_cell``/``T_cell`` in mouse match human's ``t_cell``),
    ``obs['assigned_cluster']`` verbatim, ``obs['barcode']``, ``obs['batch']`` (donor, e.g. ``'human1'``)
    and ``obs['species']``.
    """
    import anndata as ad

    if species not in BARON_SAMPLES:
        raise ValueError(f"species must be one of {sorted(BARON_SAMPLES)}, got {species!r}.")
    samples = BARON_SAMPLES[species]
    files = (
        _local_files(path, species)
        if path is not None
        else [fetch(source, data_dir) for source in samples.values()]
    )
    if not files:
        raise ValueError(f"No '*{species}*_umifm_counts.csv*' files found in {path}.")
    parts = [read_baron_csv(file) for file in files]
    adata = ad.concat(parts, join="outer", fill_value=0, merge="same", index_unique=None)
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["cell_type"] = pd.Categorical(adata.obs["cell_type"])
    adata.obs["batch"] = pd.Categorical(adata.obs["batch"])
    adata.obs["species"] = pd.Categorical([species] * adata.n_obs)
    adata.obs_names_make_unique()
    adata.uns["source"] = "Baron et al. 2016, Cell Systems 3:346, GEO GSE84133"
    return adata


def _local_files(path, species: str) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if path.is_dir():
            return sorted(path.glob(f"*{species}*_umifm_counts.csv*"))
        return [path]
    return [Path(file) for file in path]
