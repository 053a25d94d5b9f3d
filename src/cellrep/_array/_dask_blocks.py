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

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial, reduce

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
    """Per-cell ``values`` (numpy or dask) as a dask array with the given cell chunks (and one along other axes)."""
    values = values if isinstance(values, da.Array) else np.asarray(values)
    chunks = (chunks, *(-1,) * (values.ndim - 1))
    return values.rechunk(chunks) if isinstance(values, da.Array) else da.from_array(values, chunks=chunks)


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

    def blockwise(self, func: Callable, row_args: tuple, shared: dict, **blockwise_options) -> da.Array:
        """``func(in-memory block, *(arg[rows] for arg in row_args), **shared)`` as one dask layer.

        A ``da.blockwise`` over the stored array, so that dask's blockwise fusion runs the whole
        chain of a chunk (reading or decoding it, normalizing it, then ``func``) in one task. As a
        separate task, ``func`` made dask hold every intermediate chunk and move some of them
        between workers. Dask fuses only when no input axis is concatenated, so every input,
        and the output (index ``"ij"``), has one chunk of columns; ``blockwise_options`` give
        the output's ``adjust_chunks``, dtype and meta.
        """
        arrays = [self.array, "ij"]
        for values in (self.row_values, *row_args):
            if values is not None:  # in one chunk of columns, like the array: no axis to concatenate
                values = align_rows(values, self.array.chunks[0])
                arrays += [values, "ij"[: values.ndim]]
        shared = {name: dask.delayed(value, pure=True) for name, value in shared.items()}
        call = partial(
            _call_on_block,
            function=func,
            make_block=self.make_block or _identity,
            with_row_values=self.row_values is not None,
        )
        return da.blockwise(call, "ij", *arrays, align_arrays=False, **blockwise_options, **shared)

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


def _call_on_block(block, *row_blocks, function, make_block, with_row_values, **shared):
    side, row_blocks = (row_blocks[0], row_blocks[1:]) if with_row_values else (None, row_blocks)
    with block_threads():
        return function(make_block(block, side), *row_blocks, **shared)


def _partial_on_block(matrix, *row_blocks, function, **shared) -> np.ndarray:
    """``function``'s partial of one block, wrapped in a 1-element object array (a dask chunk)."""
    wrapped = np.empty((1, 1), dtype=object)
    wrapped[0, 0] = function(matrix, *row_blocks, **shared)
    return wrapped


def _add_parts(*parts):
    """Sum of partials: arrays, or tuples of arrays (``None`` entries stay ``None``).

    A part may still be wrapped in the 1-element object chunk of :func:`_partial_on_block`.
    """
    parts = [part[0, 0] if isinstance(part, np.ndarray) and part.dtype == object else part for part in parts]
    if isinstance(parts[0], tuple):
        return tuple(
            None if items[0] is None else reduce(np.add, items) for items in zip(*parts, strict=True)
        )
    return reduce(np.add, parts)


def _tree_sum(parts: list) -> object:
    while True:  # at least one level, which unwraps the chunks
        parts = [
            dask.delayed(_add_parts, pure=True)(*parts[start : start + SPLIT_EVERY])
            for start in range(0, len(parts), SPLIT_EVERY)
        ]
        if len(parts) == 1:
            return parts[0]


def blockwise_sum(func: Callable, matrix, *row_args, **shared):
    """``Σ_blocks func(block, *(arg[rows] for arg in row_args), **shared)``, computed.

    ``func`` returns a float64 array or a tuple of them (``None`` allowed) of a fixed shape;
    the partials are added in a tree of ``SPLIT_EVERY``-way sums on the workers. ``row_args``
    are per-cell arrays (numpy or dask; each block receives its rows); ``shared`` values (numpy
    arrays such as a thin dense block) are sent once and used by every block.
    """
    partials = as_row_blocks(matrix).blockwise(
        partial(_partial_on_block, function=func),
        row_args,
        shared,
        adjust_chunks={"i": 1, "j": 1},
        dtype=object,
        meta=np.empty((0, 0), dtype=object),
    )
    return dask.compute(_tree_sum(list(partials.to_delayed(optimize_graph=True).ravel())))[0]


def map_row_blocks(func: Callable, matrix, n_columns: int, dtype, **shared) -> da.Array:
    """Lazy dense ``func(block, **shared)`` of every block (rows × ``n_columns``), same cell chunks."""
    return as_row_blocks(matrix).blockwise(
        func,
        (),
        shared,
        adjust_chunks={"j": n_columns},
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
    )


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


def _stored_per_row(block) -> np.ndarray:
    """Bytes of a CSR chunk's values and indices per row, as a 1 × 1 chunk."""
    per_value = block.dtype.itemsize + block.indices.dtype.itemsize
    return np.array([[block.nnz * per_value / max(block.shape[0], 1)]])


def estimated_nbytes(array: da.Array) -> float:
    """Bytes of ``array`` in memory; CSR chunks are estimated from the first chunk (one chunk is read)."""
    if not sparse.issparse(array._meta):
        return float(array.size * array.dtype.itemsize)
    # a new layer fused with the chunk's chain: computing the chunk itself put its key in two
    # graphs with two task specs, which dask.distributed warns can cause deadlocks
    sizes = array.map_blocks(_stored_per_row, chunks=(1, 1), dtype=np.float64, meta=np.empty((0, 0)))
    per_row = float(sizes.blocks[0, 0].compute()[0, 0])
    return per_row * array.shape[0] + 8.0 * array.shape[0]


def merged_row_chunks(matrix, bytes_per_task: float, *, min_tasks: int = 4) -> DaskRowBlocks:
    """``matrix`` with runs of consecutive cell chunks merged, so that a task reads about ``bytes_per_task``.

    For a reduction whose partial is large (the dense genes × genes Gram matrix of a chunk):
    with a partial per chunk, adding the partials and moving them between workers took longer
    than computing them. At least ``min_tasks`` tasks are left; the values are unchanged.
    """
    rows = as_row_blocks(matrix)
    sizes = rows.array.chunks[0]
    per_chunk = max(estimated_nbytes(rows.array) / len(sizes), 1.0)
    merged = int(min(max(1, bytes_per_task // per_chunk), max(1, len(sizes) // min_tasks)))
    if merged <= 1:
        return rows
    chunks = tuple(sum(sizes[start : start + merged]) for start in range(0, len(sizes), merged))
    return replace(rows, array=rows.array.rechunk({0: chunks}))


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
