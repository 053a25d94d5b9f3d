"""10x Genomics PBMC3k (Cell Ranger 1.1.0 filtered gene-barcode matrices), from PyPI (verified) or 10x."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._registry import DESC_WHEEL, PBMC3K, extract_member, fetch

_DESC_MEMBER = "desc/datasets/pbmc.h5ad"


def pbmc3k(
    *,
    source: Literal["pypi", "10x"] = "pypi",
    path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
):
    """2700 peripheral blood mononuclear cells from 10x Genomics, as raw UMI counts.

    Without ``path`` the source file is downloaded once with :mod:`pooch` into ``data_dir`` and read
    from there. Both sources hold the same 2700 cells × 32738 genes:

    ``'pypi'`` (default)
        The wheel of DESC 2.1.1 on PyPI (MIT), pinned by its SHA256; it ships the counts as
        ``desc/datasets/pbmc.h5ad``.
    ``'10x'``
        ``pbmc3k_filtered_gene_bc_matrices.tar.gz`` from 10x Genomics, checked against an MD5
        that is quoted by public pipelines but could not be confirmed against the file here.

    No labels are attached by either source; the Seurat-tutorial labels are in the benchmark's
    ``pbmc3k.h5ad``.

    Parameters
    ----------
    source
        ``'pypi'`` or ``'10x'``, see above.
    path
        A local copy to read instead of downloading. For ``'pypi'``: the file
        ``desc-2.1.1-py3-none-any.whl``. For ``'10x'``: the ``.tar.gz`` archive, or an extracted
        folder containing ``matrix.mtx``, ``genes.tsv`` and ``barcodes.tsv`` (directly or in a
        subfolder such as ``filtered_gene_bc_matrices/hg19``).
    data_dir
        Download cache folder (default: :func:`~cellrep.datasets.default_data_dir`).

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts (cells × genes), barcodes as
    ``obs_names``, gene symbols as ``var_names`` (made unique), Ensembl ids in ``var['gene_ids']``,
    ``obs['batch']`` (``'pbmc3k'``) and ``obs['species']`` (``'human'``).
    """
    if source == "pypi":
        adata = _pbmc3k_from_desc(path, data_dir)
    elif source == "10x":
        adata = _pbmc3k_from_10x(path, data_dir)
    else:
        raise ValueError(f"source must be 'pypi' or '10x', got {source!r}.")
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["batch"] = pd.Categorical(["pbmc3k"] * adata.n_obs)
    adata.obs["species"] = pd.Categorical(["human"] * adata.n_obs)
    return adata


def _pbmc3k_from_desc(path, data_dir):
    if path is None:
        wheel = fetch(DESC_WHEEL, data_dir)
        return _read_desc_wheel(wheel, wheel.with_name(f"{wheel.name}.unzip"))
    with tempfile.TemporaryDirectory() as folder:
        return _read_desc_wheel(Path(path), Path(folder))


def _read_desc_wheel(wheel: Path, folder: Path):
    import anndata as ad
    from anndata.utils import make_index_unique

    stored = ad.read_h5ad(extract_member(wheel, [_DESC_MEMBER], folder))
    symbols = make_index_unique(pd.Index(stored.var["gene_symbols"].astype(str), dtype=str))
    var = pd.DataFrame({"gene_ids": stored.var["gene_ids"].astype(str).to_numpy()}, index=symbols)
    adata = ad.AnnData(stored.X, obs=pd.DataFrame(index=stored.obs_names.astype(str)), var=var)
    adata.uns["source"] = (
        "10x Genomics pbmc3k, Cell Ranger 1.1.0 filtered_gene_bc_matrices (hg19), from PyPI "
        f"desc==2.1.1 ({_DESC_MEMBER}; MIT)"
    )
    return adata


def _pbmc3k_from_10x(path, data_dir):
    source = Path(path) if path is not None else fetch(PBMC3K, data_dir)
    if source.is_dir():
        return _read_10x_folder(source)
    with tempfile.TemporaryDirectory() as extracted, tarfile.open(source) as archive:
        archive.extractall(extracted, filter="data")
        return _read_10x_folder(Path(extracted))


def _read_10x_folder(folder: Path):
    import scanpy as sc

    matrices = sorted(folder.rglob("matrix.mtx*"))
    if not matrices:
        raise ValueError(
            f"No 10x 'matrix.mtx' found under {folder}; pass the archive or its extracted folder."
        )
    adata = sc.read_10x_mtx(matrices[0].parent, var_names="gene_symbols", make_unique=True, cache=False)
    adata.uns["source"] = "10x Genomics pbmc3k, Cell Ranger 1.1.0 filtered_gene_bc_matrices (hg19)"
    return adata
