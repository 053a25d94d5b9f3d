"""10x Genomics PBMC3k (Cell Ranger 1.1.0 filtered gene-barcode matrices)."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from ._registry import PBMC3K, fetch


def pbmc3k(*, path: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
    """2700 peripheral blood mononuclear cells from 10x Genomics, as raw UMI counts.

    Without ``path`` the archive ``pbmc3k_filtered_gene_bc_matrices.tar.gz`` is downloaded once with
    :mod:`pooch` (checksum verified) into ``data_dir`` and read from there. No labels are attached;
    the Seurat-tutorial labels are in the benchmark's ``pbmc3k.h5ad``.

    Parameters
    ----------
    path
        A local copy: the ``.tar.gz`` archive, or an extracted folder containing ``matrix.mtx``,
        ``genes.tsv`` and ``barcodes.tsv`` (directly or in a subfolder such as
        ``filtered_gene_bc_matrices/hg19``).
    data_dir
        Download cache folder (default: :func:`~cellrep.datasets.default_data_dir`).

    Returns
    -------
    :class:`~anndata.AnnData` with CSR ``float32`` counts (cells × genes), gene symbols as
    ``var_names`` (made unique) and Ensembl ids in ``var['gene_ids']``.
    """
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
    adata.X = adata.X.tocsr()
    adata.uns["source"] = "10x Genomics pbmc3k, Cell Ranger 1.1.0 filtered_gene_bc_matrices (hg19)"
    return adata
