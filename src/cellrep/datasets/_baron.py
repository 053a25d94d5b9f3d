"""Baron et al. 2016 pancreas atlas (GEO GSE84133), human and mouse, from PyPI (verified) or GEO."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._registry import BARON_SAMPLES, CAME_WHEEL, extract_member, fetch

_CAME_SAMPLE_DATA = "came/sample_data.zip"
#: Ensembl one-to-one orthologs (plus 7 one-to-many rows, which are dropped), one row per pair.
_CAME_ORTHOLOGS = "gene_matches_1v1_human2mouse.csv"
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
    source: Literal["pypi", "geo"] = "pypi",
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    data_dir: str | os.PathLike | None = None,
):
    """Baron et al. 2016 pancreatic islet cells (inDrop UMI counts, GEO GSE84133).

    Without ``path`` the source files are downloaded once with :mod:`pooch` into ``data_dir``
    (default: :func:`~cellrep.datasets.default_data_dir`) and read from there. Two sources exist:

    ``'pypi'`` (default)
        The wheel of CAME 0.1.13 on PyPI (MIT), pinned by its SHA256, so every download is verified.
        It holds *all* 1886 mouse cells but only a random **25 % subsample of the human cells**
        (2142 of 8569, all 4 donors), drawn by the CAME authors. It also provides Ensembl's
        one-to-one human–mouse orthologs, stored in ``var``.
    ``'geo'``
        The per-donor CSV files on GEO: every cell (human 8569, mouse 1886). No checksum could be
        obtained when the registry was written, so these downloads are not verified; pooch logs the
        SHA256 on the first download. No ortholog column.

    Parameters
    ----------
    species
        ``'human'`` (4 donors) or ``'mouse'`` (2 strains).
    source
        ``'pypi'`` or ``'geo'``, see above.
    path
        A local copy to read instead of downloading. For ``'pypi'``: the file
        ``came-0.1.13-py3-none-any.whl``. For ``'geo'``: a folder holding the
        ``GSM..._umifm_counts.csv.gz`` files of ``species``, one such file, or a list of them.
    data_dir
        Download cache folder.

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts in ``X`` and

    - ``obs['cell_type']``: Baron's ``assigned_cluster`` lower-cased, so mouse ``B_cell``/``T_cell``
      match human ``t_cell``; ``obs['assigned_cluster']`` keeps it verbatim;
    - ``obs['batch']``: the donor, e.g. ``'human1'``; ``obs['species']``;
    - ``'pypi'`` only: ``var['mouse_ortholog']`` (human) or ``var['human_ortholog']`` (mouse), the
      one-to-one ortholog's symbol or ``''``, and CAME's ``obs['cell_ontology_class']``,
      ``obs['cell_ontology_id']``, ``obs['library']``;
    - ``'geo'`` only: ``obs['barcode']``.
    """
    if species not in BARON_SAMPLES:
        raise ValueError(f"species must be one of {sorted(BARON_SAMPLES)}, got {species!r}.")
    if source == "pypi":
        adata = _baron_from_came(species, path, data_dir)
    elif source == "geo":
        adata = _baron_from_geo(species, path, data_dir)
    else:
        raise ValueError(f"source must be 'pypi' or 'geo', got {source!r}.")
    adata.obs["cell_type"] = pd.Categorical(adata.obs["cell_type"])
    adata.obs["batch"] = pd.Categorical(adata.obs["batch"])
    adata.obs["species"] = pd.Categorical([species] * adata.n_obs)
    return adata


def _baron_from_geo(species: str, path, data_dir):
    import anndata as ad

    files = (
        _local_files(path, species)
        if path is not None
        else [fetch(source, data_dir) for source in BARON_SAMPLES[species].values()]
    )
    if not files:
        raise ValueError(f"No '*{species}*_umifm_counts.csv*' files found in {path}.")
    parts = [read_baron_csv(file) for file in files]
    adata = ad.concat(parts, join="outer", fill_value=0, merge="same", index_unique=None)
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.obs_names_make_unique()
    adata.uns["source"] = "Baron et al. 2016, Cell Systems 3:346, GEO GSE84133 (per-donor CSV files)"
    return adata


def _baron_from_came(species: str, path, data_dir):
    if path is None:
        wheel = fetch(CAME_WHEEL, data_dir)
        return _read_came_wheel(wheel, wheel.with_name(f"{wheel.name}.unzip"), species)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError("With source='pypi', path must be the single file came-0.1.13-py3-none-any.whl.")
    with tempfile.TemporaryDirectory() as folder:
        return _read_came_wheel(Path(path), Path(folder), species)


def _read_came_wheel(wheel: Path, folder: Path, species: str):
    import anndata as ad

    counts_file = extract_member(wheel, [_CAME_SAMPLE_DATA, f"raw-Baron_{species}.h5ad"], folder)
    orthologs_file = extract_member(wheel, [_CAME_SAMPLE_DATA, _CAME_ORTHOLOGS], folder)
    adata = ad.read_h5ad(counts_file)
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.obs = adata.obs.rename(columns={"cell_type1": "assigned_cluster"})
    adata.obs.index.name = None
    adata.obs["cell_type"] = adata.obs["assigned_cluster"].astype(str).str.lower()
    adata.obs["batch"] = adata.obs["donor"]
    orthologs = pd.read_csv(orthologs_file)
    orthologs = orthologs[orthologs["human.homology.type"] == "ortholog_one2one"]
    own, other = ("human.gene.name", "gene.name") if species == "human" else ("gene.name", "human.gene.name")
    ortholog_of = dict(zip(orthologs[own], orthologs[other], strict=True))
    other_species = "mouse" if species == "human" else "human"
    adata.var[f"{other_species}_ortholog"] = [ortholog_of.get(gene, "") for gene in adata.var_names]
    adata.uns["source"] = (
        f"Baron et al. 2016, Cell Systems 3:346, GEO GSE84133, from PyPI came==0.1.13 "
        f"(came/sample_data.zip: raw-Baron_{species}.h5ad, {_CAME_ORTHOLOGS}; MIT)"
        + (", a 25 % random subsample of the human cells" if species == "human" else "")
    )
    return adata


def _local_files(path, species: str) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if path.is_dir():
            return sorted(path.glob(f"*{species}*_umifm_counts.csv*"))
        return [path]
    return [Path(file) for file in path]
