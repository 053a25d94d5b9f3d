"""Minibatches from lazily loaded (dask) counts that read each chunk once per epoch.

scvi-tools' loader draws every minibatch at random from all training cells, and a dask array
reads every chunk the rows of ``X[rows].compute()`` fall in: 256 random cells of a file in 50
chunks touch nearly all of them, so each step reads most of the file. As chunk-aware loaders
do (scDataset's block sampling, annbatch), an epoch here instead shuffles the order of the
chunks, reads ``window`` consecutive chunks of that order in one dask compute, shuffles their
cells and cuts the minibatches from them in memory; the fewer than ``batch_size`` cells left
over join the next window's cells. Every chunk is read once per epoch, whatever the window.

The cells still come through scvi-tools' ``AnnTorchDataset`` (one ``dataset[rows]`` call per
window) and its ``DataSplitter`` split; only the order of the cells and the grouping of the
reads change. A backed (h5py) file reads exactly a minibatch's rows, so it keeps scvi-tools'
random minibatches, as do in-memory counts and training across processes (DDP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.dataloaders import DataSplitter
from torch.utils.data import DataLoader, IterableDataset, Sampler

from .._validation import is_dask_array
from ._data import collate

# 'auto' windows hold about this many cells: 16 MB of CSR at 200 non-zeros per cell, 200 MB at
# 2 500 (the read holds about 2.5x that briefly, see docs/benchmarks.md)
AUTO_WINDOW_CELLS = 10_000


def check_chunk_window(chunk_window) -> None:
    """Raise a ValueError unless ``chunk_window`` is None, ``'auto'`` or a positive integer."""
    if chunk_window is None or (isinstance(chunk_window, str) and chunk_window == "auto"):
        return
    if isinstance(chunk_window, bool) or not isinstance(chunk_window, int | np.integer) or chunk_window < 1:
        raise ValueError(
            f"chunk_window must be a positive number of chunks, 'auto' or None, got {chunk_window!r}."
        )


def resolve_chunk_window(chunk_window: int | str, chunk_sizes: tuple[int, ...]) -> int:
    """Chunks per window: ``chunk_window``, or for ``'auto'`` enough for :data:`AUTO_WINDOW_CELLS` cells."""
    if chunk_window == "auto":
        return max(1, math.ceil(AUTO_WINDOW_CELLS / max(chunk_sizes)))
    return int(chunk_window)


def chunk_windows(
    rows: np.ndarray, chunk_sizes: tuple[int, ...], window: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Positions into ``rows`` grouped by windows of ``window`` chunks.

    Parameters
    ----------
    rows
        Rows (cells) of the whole matrix that make up the dataset, shape ``(n,)``.
    chunk_sizes
        Cells per chunk of the dask array (``X.chunks[0]``).
    window
        Chunks per window.
    rng
        Shuffles the order of the chunks and the positions within each window; None keeps
        both in file (row) order.

    Returns
    -------
    One array of positions (``0 .. n - 1``) per window; together every position once.
    """
    bounds = np.cumsum(chunk_sizes)
    chunk_of_row = np.searchsorted(bounds, rows, side="right")
    by_chunk = np.argsort(chunk_of_row, kind="stable")
    counts = np.bincount(chunk_of_row, minlength=len(chunk_sizes))
    starts = np.concatenate([[0], np.cumsum(counts)])
    present = np.flatnonzero(counts)
    order = rng.permutation(present) if rng is not None else present
    windows = []
    for first in range(0, len(order), window):
        positions = np.concatenate(
            [by_chunk[starts[c] : starts[c + 1]] for c in order[first : first + window]]
        )
        if rng is None:
            windows.append(positions[np.argsort(rows[positions], kind="stable")])
        else:
            windows.append(rng.permutation(positions))
    return windows


class ChunkWindowSampler(Sampler):
    """Yields, each epoch, the positions of one window of chunks at a time (see :func:`chunk_windows`).

    ``seed`` None draws the seed from torch's generator, so ``scvi.settings.seed`` (or
    ``torch.manual_seed``) makes the order reproducible; each epoch draws a new order.
    """

    def __init__(
        self,
        rows: np.ndarray,
        chunk_sizes: tuple[int, ...],
        window: int,
        *,
        shuffle: bool = True,
        seed: int | None = None,
    ):
        check_chunk_window(window)
        self.rows = np.asarray(rows)
        self.chunk_sizes = tuple(chunk_sizes)
        self.window = int(window)
        if seed is None:
            seed = int(torch.randint(2**62, (), dtype=torch.int64))
        self.rng = np.random.default_rng(seed) if shuffle else None

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from chunk_windows(self.rows, self.chunk_sizes, self.window, self.rng)

    def __len__(self) -> int:
        bounds = np.cumsum(self.chunk_sizes)
        present = np.unique(np.searchsorted(bounds, self.rows, side="right"))
        return math.ceil(len(present) / self.window)


def _concatenate(first, second):
    if sparse.issparse(first):
        return sparse.vstack([first, second], format="csr")
    return np.concatenate([first, second])


class WindowMinibatches(IterableDataset):
    """Minibatches of ``batch_size`` cells cut from windows of chunks read in one call each.

    Parameters
    ----------
    dataset
        scvi-tools' dataset of the cells (``AnnDataManager.create_torch_dataset(indices)``):
        ``dataset[positions]`` returns a dict of arrays with one row per position.
    sampler
        :class:`ChunkWindowSampler` over the same cells.
    batch_size
        Cells per minibatch; only the last minibatch of an epoch can be smaller.
    drop_last
        Drop that smaller last minibatch.
    """

    def __init__(self, dataset, sampler: ChunkWindowSampler, batch_size: int, drop_last: bool = False):
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __len__(self) -> int:
        n_cells = len(self.sampler.rows)
        return n_cells // self.batch_size if self.drop_last else math.ceil(n_cells / self.batch_size)

    def _read(self, positions: np.ndarray) -> tuple[dict, np.ndarray]:
        """The cells at ``positions``, read in increasing row order in one call, and their order.

        Returns the cells in row order and the index into them of each position in turn; the
        minibatches take their rows through that index, so the window is never copied whole.
        """
        by_row = np.argsort(self.sampler.rows[positions], kind="stable")
        cells = self.dataset[positions[by_row].tolist()]
        order = np.empty_like(by_row)
        order[by_row] = np.arange(by_row.size)
        return cells, order

    def __iter__(self) -> Iterator[dict]:
        size, left = self.batch_size, None  # left: fewer than batch_size cells of earlier windows
        for positions in self.sampler:
            cells, order = self._read(positions)
            start = 0
            if left is not None:
                start = min(size - _n_rows(left), order.size)
                left = {key: _concatenate(left[key], value[order[:start]]) for key, value in cells.items()}
                if _n_rows(left) < size:
                    continue
                yield left
                left = None
            n_full = (order.size - start) // size
            for first in range(start, start + n_full * size, size):
                yield {key: value[order[first : first + size]] for key, value in cells.items()}
            rest = order[start + n_full * size :]
            left = {key: value[rest] for key, value in cells.items()} if rest.size else None
        if left is not None and not self.drop_last:
            yield left


def _n_rows(cells: dict) -> int:
    return next(iter(cells.values())).shape[0]


class ChunkWindowDataSplitter(DataSplitter):
    """scvi-tools' ``DataSplitter`` whose loaders read dask counts window by window.

    ``chunk_window`` (chunks per window, ``'auto'``, or None for scvi-tools' random
    minibatches) applies only to counts registered as a dask array and to one process;
    otherwise this is scvi-tools' splitter unchanged. The attribute ``chunk_window`` holds the
    number of chunks used (None when the minibatches are scvi-tools').
    """

    def __init__(self, adata_manager, *args, chunk_window: int | str | None = None, **kwargs):
        check_chunk_window(chunk_window)
        super().__init__(adata_manager, *args, **kwargs)
        counts = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        windowed = (
            chunk_window is not None
            and is_dask_array(counts)
            and not self.data_loader_kwargs.get("distributed_sampler", False)
        )
        self.chunk_window = resolve_chunk_window(chunk_window, counts.chunks[0]) if windowed else None

    def _windowed(self) -> bool:
        return self.chunk_window is not None

    def _window_loader(self, indices: np.ndarray, shuffle: bool, drop_last: bool) -> DataLoader:
        counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        dataset = self.adata_manager.create_torch_dataset(indices=indices)
        sampler = ChunkWindowSampler(indices, counts.chunks[0], self.chunk_window, shuffle=shuffle)
        batch_size = self.data_loader_kwargs["batch_size"]
        minibatches = WindowMinibatches(dataset, sampler, batch_size, drop_last=drop_last)
        return DataLoader(minibatches, batch_size=None, collate_fn=collate, pin_memory=self.pin_memory)

    def train_dataloader(self):
        if not self._windowed():
            return super().train_dataloader()
        return self._window_loader(np.asarray(self.train_idx), shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self):
        if not self._windowed() or len(self.val_idx) == 0:
            return super().val_dataloader()
        return self._window_loader(np.asarray(self.val_idx), shuffle=False, drop_last=False)
