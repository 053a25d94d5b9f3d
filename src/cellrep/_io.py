"""Lazy loading: an AnnData whose count matrices stay on disk as dask arrays of chunks of cells."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # anndata is imported on use, so that `cellrep --help` stays fast
    from anndata import AnnData

DEFAULT_CHUNK_SIZE = 10_000


def read_lazy(path: str | PathLike, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Open an ``.h5ad`` file or ``.zarr`` store with ``X`` and the layers left on disk.

    ``X`` and every layer become dask arrays (``anndata.experimental.read_elem_lazy``) of
    ``chunk_size`` cells each, with CSR (or dense) chunks, which every dask-capable function
    of ``cr.pp`` and ``cr.tl`` reads chunk by chunk; ``obs``, ``var``, ``obsm`` and ``uns`` are
    read into memory as pandas/numpy (unlike ``anndata.experimental.read_lazy``, whose
    xarray ``obs`` the label columns cannot be read from). An h5ad file stays open while the
    arrays are in use.

    Parameters
    ----------
    path
        ``.h5ad`` file or ``.zarr`` directory written by anndata.
    chunk_size
        Cells per chunk: a worker holds a few chunks (CSR: about ``chunk_size`` × non-zeros per
        cell × 8 bytes each) at a time.

    Returns
    -------
    The AnnData; ``adata.X.compute()`` (or ``.persist()``) loads the values.

    Examples
    --------
    >>> query = cr.read_lazy("query.h5ad", chunk_size=20_000)
    >>> cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    >>> query.obs[["cell_type_pred", "cell_type_confidence"]].to_csv("labels.csv")
    """
    from anndata import AnnData
    from anndata.experimental import read_elem_lazy
    from anndata.io import read_elem

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_dir():
        import zarr

        store = zarr.open_group(str(path), mode="r")
    else:
        import h5py

        store = h5py.File(path, "r")

    def lazy(element):
        return read_elem_lazy(element, chunks=(chunk_size, element.attrs.get("shape", [0, -1])[1]))

    def eager(key):
        return read_elem(store[key]) if key in store else None

    layers = store.get("layers", {})
    return AnnData(
        X=lazy(store["X"]) if "X" in store else None,
        obs=eager("obs"),
        var=eager("var"),
        uns=eager("uns") or {},
        obsm=eager("obsm") or {},
        varm=eager("varm") or {},
        layers={name: lazy(layers[name]) for name in layers},
    )
