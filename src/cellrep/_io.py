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


def persist_counts(adata: AnnData, *, layer: str | None = None) -> None:
    """Read a lazily loaded count matrix once and hold it in memory, compactly encoded.

    Every pass over a lazily read matrix (the gene selection, the subset of selected genes, the
    reference of a transfer) reads the file again. After ``persist_counts`` the chunks are held
    by the dask workers (or this process under the threaded scheduler) with CSR values in the
    smallest unsigned integer type that holds them when they are non-negative integers
    (``uint8``/``uint16``/``uint32``) and gene indices as ``uint16`` when there are at most
    65 536 genes: 2–4 bytes per stored value instead of float32 CSR's 8. Each later task decodes
    its chunk back to the original dtype, so results are bitwise those of the file.

    Parameters
    ----------
    adata
        AnnData whose ``X`` (or ``layer``) is a dask array chunked along cells, with CSR or
        dense chunks (:func:`cellrep.read_lazy`). Replaced in place by the held matrix, still a
        dask array with the same chunks. Dense chunks are held as they are.
    layer
        Layer to hold instead of ``X``.

    Raises
    ------
    ValueError
        If ``layer`` is not in ``adata.layers``.
    TypeError
        If the matrix is not a dask array, or is chunked along genes or has CSC chunks.

    Notes
    -----
    Writes ``adata.uns['persist_counts'] = {'layer': layer, 'bytes_held': int}``. The held
    matrix takes about (value bytes + index bytes) × stored values, for example 1.9 GB for
    1 000 000 cells with 500 small counts each over 20 000 genes; see docs/scale-out.md.

    Examples
    --------
    >>> adata = cr.read_lazy("atlas.zarr")
    >>> cr.persist_counts(adata)  # one read of the file
    >>> cr.pp.log_normalize(adata)
    >>> cr.pp.select_genes(adata, method="hvg")  # reads the held chunks, not the file
    """
    import dask.array as da
    from scipy import sparse

    from ._array._dask_compact import persist_compact
    from ._validation import check_dask_layout

    if layer is not None and layer not in adata.layers:
        raise ValueError(f"layer={layer!r} is not in adata.layers ({list(adata.layers)}).")
    matrix = adata.X if layer is None else adata.layers[layer]
    if not isinstance(matrix, da.Array):
        raise TypeError(
            f"persist_counts holds a lazily read (dask) matrix, got {type(matrix).__name__}; "
            "read the file with `cr.read_lazy(path)` first (an in-memory matrix needs nothing)."
        )
    check_dask_layout(matrix)
    if sparse.issparse(matrix._meta):
        held, bytes_held = persist_compact(matrix)
    else:
        held = matrix.persist()
        bytes_held = int(matrix.nbytes)
    if layer is None:
        adata.X = held
    else:
        adata.layers[layer] = held
    adata.uns["persist_counts"] = {"layer": layer, "bytes_held": bytes_held}
