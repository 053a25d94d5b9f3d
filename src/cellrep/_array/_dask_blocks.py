"""Row blocks of dask arrays: the per-block machinery behind every dask implementation.

A dask array here is cells × genes, chunked along cells only, with CSR or dense chunks
(:func:`cellrep._validation.check_dask_layout`). Each chunk of cells becomes an in-memory
matrix on which cellrep's own kernels run unchanged:

- a *map* applies a row-wise function to every block and stays lazy (a dask array with the
  same cell chunks);
- a *reduction* adds float64 per-block partials (column sums, Gram products) in a tree and
  computes the small result.

:class:`DaskRowBlocks` carries implicit matrices (rank-probit deltas plus one offset per cell,
Pearson residuals over counts) as the dask array of their stored data plus the per-cell values
and the recipe that rebuilds the in-memory matrix of a block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import reduce

import dask.array as da
import numpy as np
from scipy import sparse

import dask

from .._settings import numba_threads, settings

SPLIT_EVERY = 8  # partials added per task of the tree reduction


def block_threads():
    """Numba threads inside a dask task: one (dask runs the tasks in parallel), unless the user set a limit."""
    return numba_threads(settings.n_threads or 1)


def meta_like(array: da.Array, dtype) -> np.ndarray | sparse.spmatrix:
    """An empty chunk of the same kind as ``array``'s (ndarray, csr_matrix or csr_array) with ``dtype``."""
    meta = array._meta
    if sparse.issparse(meta):
        return type(meta)((0, 0), dtype=dtype)
    return np.empty((0, 0), dtype=dtype)


def row_bounds(array: da.Array) -> np.ndarray:
    """First row of every chunk of cells, and the number of rows at the end."""
    return np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)


def align_rows(values, chunks: tuple[int, ...]) -> da.Array:
    """Per-cell ``values`` (numpy or dask) as a dask array with the given cell chunks."""
    if isinstance(values, da.Array):
        return values.rechunk((chunks, *values.chunks[1:]))
    values = np.asarray(values)
    return da.from_array(values, chunks=(chunks, *tuple(-1 for _ in values.shape[1:])))


def _identity(block, _row_values=None):
    return block


@dataclass(frozen=True, eq=False)
class DaskRowBlocks:
    """A cells × genes matrix held as a dask array of cell blocks.

    The in-memory matrix of a block is ``make_block(array_block, row_values_block)``, for example
    an :class:`~cellrep._array._offset.OffsetSparseMatrix` of rank-probit deltas and offsets.

    Parameters
    ----------
    array
        Stored data (CSR or dense chunks), chunked along cells only.
    make_block
        Turns a chunk and its per-cell values into the in-memory matrix; ``None``: the chunk itself.
    row_values
        Per-cell values passed to ``make_block`` (numpy or dask), or ``None``.
    dtype
        Dtype of the values of the matrix (default: that of ``array``).
    """

    array: da.Array
    make_block: Callable | None = None
    row_values: np.ndarray | da.Array | None = None
    dtype: np.dtype | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype or self.array.dtype))
        if self.row_values is not None:
            object.__setattr__(self, "row_values", align_rows(self.row_values, self.array.chunks[0]))

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape

    ndim = 2

    def __repr__(self) -> str:
        return f"DaskRowBlocks(shape={self.shape}, dtype={self.dtype}, n_blocks={len(self.array.chunks[0])})"

    def blocks(self) -> Iterator[tuple[object, slice]]:
        """``(delayed in-memory matrix, rows)`` for every chunk of cells.

        Built once per matrix and reused: the PCA's passes would otherwise spend a tenth of a
        second each turning the same dask array into delayed chunks again.
        """
        cached = self.__dict__.get("_blocks")
        if cached is None:
            bounds = row_bounds(self.array)
            chunks = self.array.to_delayed().ravel()
            side = [None] * len(chunks) if self.row_values is None else self.row_values.to_delayed().ravel()
            make_block = self.make_block or _identity
            cached = [
                (dask.delayed(make_block, pure=True)(chunk, side[index]), slice(int(bounds[index]), int(bounds[index + 1])))
                for index, chunk in enumerate(chunks)
            ]
            object.__setattr__(self, "_blocks", cached)
        return iter(cached)

    def take_rows(self, rows: np.ndarray):
        """The in-memory matrix of the (sorted) ``rows``: reads only the chunks that hold them."""
        chunk = self.array[rows]
        side = None if self.row_values is None else self.row_values[rows]
        chunk, side = dask.compute(chunk, side)
        return (self.make_block or _identity)(chunk, side)

    def __getitem__(self, key) -> DaskRowBlocks:
        """All cells and a subset of genes: ``matrix[:, columns]`` (the per-cell values are kept)."""
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        if not (isinstance(rows, slice) and rows == slice(None)):
            raise IndexError("Only gene subsets (matrix[:, genes]) of a dask-backed matrix are supported.")
        return DaskRowBlocks(self.array[:, columns], self.make_block, self.row_values, self.dtype)


def as_row_blocks(matrix) -> DaskRowBlocks:
    """A plain dask array as :class:`DaskRowBlocks` (which are returned as they are)."""
    return matrix if isinstance(matrix, DaskRowBlocks) else DaskRowBlocks(matrix)


def _add_parts(*parts):
    """Sum of partials: arrays, or tuples of arrays (``None`` entries stay ``None``)."""
    if isinstance(parts[0], tuple):
        return tuple(
            None if items[0] is None else reduce(np.add, items) for items in zip(*parts, strict=True)
        )
    return reduce(np.add, parts)


def _tree_sum(parts: list) -> object:
    while len(parts) > 1:
        parts = [
            dask.delayed(_add_parts, pure=True)(*parts[start : start + SPLIT_EVERY])
            for start in range(0, len(parts), SPLIT_EVERY)
        ]
    return parts[0]


def _with_block_threads(func, *args, **kwargs):
    with block_threads():
        return func(*args, **kwargs)


def blockwise_sum(func: Callable, matrix, *row_args, **shared):
    """``Σ_blocks func(block, *(arg[rows] for arg in row_args), **shared)``, computed.

    ``func`` returns a float64 array or a tuple of them (``None`` allowed) of a fixed shape;
    the partials are added in a tree of ``SPLIT_EVERY``-way sums on the workers. ``row_args``
    are per-cell numpy arrays (each block receives its slice); ``shared`` values (numpy arrays
    such as a thin dense block) are sent once and used by every block.
    """
    shared = {name: dask.delayed(value, pure=True) for name, value in shared.items()}
    parts = [
        dask.delayed(_with_block_threads, pure=True)(
            func, block, *(np.asarray(arg)[rows] for arg in row_args), **shared
        )
        for block, rows in as_row_blocks(matrix).blocks()
    ]
    return dask.compute(_tree_sum(parts))[0]


def map_row_blocks(func: Callable, matrix, n_columns: int, dtype, **shared) -> da.Array:
    """Lazy dense ``func(block, **shared)`` of every block (rows × ``n_columns``), same cell chunks."""
    shared = {name: dask.delayed(value, pure=True) for name, value in shared.items()}
    pieces = [
        da.from_delayed(
            dask.delayed(_with_block_threads, pure=True)(func, block, **shared),
            shape=(rows.stop - rows.start, n_columns),
            dtype=dtype,
            meta=np.empty((0, 0), dtype=dtype),
        )
        for block, rows in as_row_blocks(matrix).blocks()
    ]
    return da.concatenate(pieces, axis=0)


#: share of the workers' memory (or, without a distributed client, of this machine's available
#: memory) that a matrix read several times may take when it is held in memory
PERSIST_MEMORY_FRACTION = 0.25


def memory_budget() -> float:
    """Bytes that a persisted matrix may take: ``PERSIST_MEMORY_FRACTION`` of the memory its chunks would use."""
    import psutil

    try:
        from distributed import get_client

        workers = get_client().scheduler_info(n_workers=-1)["workers"].values()
        limits = [worker.get("memory_limit") or 0 for worker in workers]
        if limits and all(limits):
            return PERSIST_MEMORY_FRACTION * sum(limits)
    except (ImportError, ValueError, TypeError):  # no distributed client: the threads of this process
        pass
    return PERSIST_MEMORY_FRACTION * psutil.virtual_memory().available


def estimated_nbytes(array: da.Array) -> float:
    """Bytes of ``array`` in memory; CSR chunks are estimated from the first chunk (one chunk is read)."""
    if not sparse.issparse(array._meta):
        return float(array.size * array.dtype.itemsize)
    first = array.blocks[0].compute()
    per_row = (first.nnz * (first.dtype.itemsize + first.indices.dtype.itemsize)) / max(first.shape[0], 1)
    return per_row * array.shape[0] + 8.0 * array.shape[0]


def persisted_if_fits(matrix):
    """``matrix`` (a dask array or :class:`DaskRowBlocks`) computed once and held in memory, if it fits.

    A matrix that several passes read (the column statistics, every step of the PCA, the scores)
    would otherwise be read from its source and recomputed on every pass. Held on the workers of
    a distributed client, or in this process under the threaded scheduler. A matrix larger than
    :func:`memory_budget` is returned as it is (every pass then reads the source again).
    """
    array = matrix.array if isinstance(matrix, DaskRowBlocks) else matrix
    if estimated_nbytes(array) > memory_budget():
        return matrix
    if not isinstance(matrix, DaskRowBlocks):
        return matrix.persist()
    if matrix.row_values is None:
        return replace(matrix, array=array.persist())
    array, row_values = dask.persist(array, matrix.row_values)
    return replace(matrix, array=array, row_values=row_values)
