"""``cellrep benchmark --lazy``: the counts stay on disk and cellrep's methods read them in chunks.

With ``--lazy`` the dataset (and the query) are opened with :func:`cellrep.read_lazy`: ``X`` is
a dask array of ``--chunk-size`` cells. The splits are cut as in memory (same cells, same
seeds); then

- cellrep's own methods (the default, Souza–Mehta, every variant, cellrep's scTOP) run on the
  dask arrays, reading the chunks of their cells on the ``--scheduler``;
- the peers (scanpy's pipeline, sctop, CellTypist, SingleR, the learned models) cannot read
  dask arrays: each of their train and test sets is loaded into memory first, inside their
  timed fit / predict, and the command says so once on stderr with the size to expect.

Cells are read in file order: the shuffled cells of a stratified split would make every chunk
of the split depend on every chunk of the file. Predictions are returned in the split's order.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from .._validation import get_matrix, is_dask_array

#: obs column with every cell's row in the file, added under --lazy to restore file order
ROW_COLUMN = "_cellrep_file_row"
DASK_FAMILIES = ("cellrep", "variant")


def read_lazy_input(path, option: str, chunk_size: int, *, first_row: int = 0):
    """``cellrep.read_lazy(path)`` with a one-line error for a missing or unreadable file or store.

    ``obs[ROW_COLUMN]`` numbers the cells from ``first_row`` (the query's follow the dataset's).
    """
    from .. import read_lazy
    from ._cli import InputError

    if not path.exists():
        raise InputError(f"{option} {path}: no such file")
    try:
        adata = read_lazy(path, chunk_size=chunk_size)
    except Exception as error:  # h5py, zarr and anndata raise many kinds for a file that is not AnnData
        raise InputError(
            f"{option} {path} is not a readable AnnData .h5ad file or .zarr store ({type(error).__name__}: {error})"
        ) from error
    if adata.X is None:
        raise InputError(f"{option} {path} has no X")
    adata.obs[ROW_COLUMN] = np.arange(first_row, first_row + adata.n_obs)
    return adata


def first_chunk(matrix):
    """The first chunk of cells of a dask array, in memory (what ``--lazy`` checks before the fits)."""
    return matrix.blocks[0].compute() if is_dask_array(matrix) else matrix


def in_memory_bytes(adata) -> float:
    """Bytes of ``adata.X`` once loaded, estimated from its first chunk (CSR: values and column indices)."""
    chunk = first_chunk(get_matrix(adata))
    if hasattr(chunk, "nnz"):
        per_cell = chunk.nnz * (chunk.dtype.itemsize + chunk.indices.dtype.itemsize) / max(chunk.shape[0], 1)
    else:
        per_cell = chunk.shape[1] * chunk.dtype.itemsize
    return per_cell * adata.n_obs


def file_ordered(adata, source):
    """``adata`` with its cells in file order, and the order applied (``None``: already in file order).

    When ``adata`` holds cells and all genes of ``source``, its ``X`` is taken from ``source`` directly,
    so that each chunk of the result reads only the chunks of the file that hold its cells.
    """
    rows = adata.obs[ROW_COLUMN].to_numpy()
    if np.all(rows[1:] >= rows[:-1]):
        return adata, None
    order = np.argsort(rows, kind="stable")
    ordered = adata[order].copy()
    if adata.var_names.equals(source.var_names) and rows.max() < source.n_obs:
        ordered.X = get_matrix(source)[rows[order]]
    return ordered, order


def _restore_order(output, order: np.ndarray):
    """Per-cell outputs of cells taken in ``order`` put back in the original order."""
    if isinstance(output, tuple):
        return tuple(_restore_order(part, order) for part in output)
    values = np.asarray(output)
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def loaded(adata, source):
    """An in-memory copy of ``adata`` (``X`` only, no layers), read in file order, in ``adata``'s order."""
    ordered, order = file_ordered(adata, source)
    memory = ordered.copy()
    memory.layers = {}
    memory.X = memory.X.compute() if is_dask_array(memory.X) else memory.X
    return memory if order is None else memory[np.argsort(order)].copy()


def reads_dask(method) -> bool:
    return method.family in DASK_FAMILIES


def lazy_method(method, source):
    """``method`` for lazily read data: on the dask arrays (cellrep) or on in-memory copies (peers)."""
    if not reads_dask(method):
        return replace(
            method,
            fit=lambda train, labels_key, seed: method.fit(loaded(train, source), labels_key, seed),
            predict=lambda model, test: method.predict(model, loaded(test, source)),
        )

    def fit(train, labels_key: str, seed: int):
        return method.fit(file_ordered(train, source)[0], labels_key, seed)

    def predict(model, test):
        ordered, order = file_ordered(test, source)
        output = method.predict(model, ordered)
        return output if order is None else _restore_order(output, order)

    return replace(method, fit=fit, predict=predict)


def lazy_methods(methods, inputs) -> list:
    """The methods wrapped for ``--lazy``; warns once on stderr about the peers loaded into memory."""
    peers = [method.name for method in methods if not reads_dask(method)]
    if peers:
        sizes = [f"--data {in_memory_bytes(inputs.data) / 2**30:.2f} GiB"]
        if inputs.query is not None:
            sizes.append(f"--query {in_memory_bytes(inputs.query) / 2**30:.2f} GiB")
        print(
            f"cellrep benchmark: warning: --lazy: {', '.join(peers)} cannot read dask arrays; each of their "
            f"train and test sets is loaded into memory (up to {', '.join(sizes)}); leave them out of "
            "--methods to keep every read on disk",
            file=sys.stderr,
        )
    return [lazy_method(method, inputs.data) for method in methods]
