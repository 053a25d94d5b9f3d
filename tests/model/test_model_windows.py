"""Training from lazily loaded (dask) counts reads windows of chunks, each chunk once per epoch."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from dask.callbacks import Callback
from scipy import sparse
from tests.model.model_fixtures import single_torch_thread  # noqa: F401
from tests.model.test_model_disk import QUIET, TINY, write_counts

import cellrep as cr
from cellrep.model import CellEncoder
from cellrep.model._windows import (
    AUTO_WINDOW_CELLS,
    ChunkWindowSampler,
    WindowMinibatches,
    chunk_windows,
    resolve_chunk_window,
)

CHUNK_SIZES = (64,) * 18 + (48,)  # 1200 cells, the last chunk shorter
BOUNDS = np.concatenate([[0], np.cumsum(CHUNK_SIZES)])


class RecordingDataset:
    """Stands for scvi-tools' dataset: ``dataset[positions]`` gives each cell's position as X and labels."""

    def __init__(self):
        self.reads = []

    def __getitem__(self, positions: list[int]) -> dict:
        self.reads.append(np.asarray(positions))
        column = np.asarray(positions, dtype=np.float32)[:, None]
        return {"X": sparse.csr_matrix(column + 1), "labels": np.asarray(positions)[:, None]}


def chunks_of(rows: np.ndarray) -> set[int]:
    return set(np.searchsorted(BOUNDS, rows, side="right") - 1)


@pytest.fixture
def rows() -> np.ndarray:
    """A random 90 % of the cells, in random order, as scvi-tools' split gives them."""
    return np.random.default_rng(1).permutation(1200)[:1080]


def test_chunk_windows_partition_the_cells_by_consecutive_chunks_of_a_shuffled_order(rows):
    windows = chunk_windows(rows, CHUNK_SIZES, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(windows).tolist()) == list(range(rows.size))
    assert len(windows) == 5  # 19 chunks, 4 per window
    window_chunks = [chunks_of(rows[positions]) for positions in windows]
    assert [len(chunks) for chunks in window_chunks] == [4, 4, 4, 4, 3]
    assert set().union(*window_chunks) == set(range(19))  # each chunk in exactly one window
    assert sum(len(chunks) for chunks in window_chunks) == 19
    in_file_order = chunk_windows(rows, CHUNK_SIZES, 4, None)
    assert sorted(chunks_of(rows[in_file_order[0]])) == [0, 1, 2, 3]
    assert (np.diff(rows[in_file_order[0]]) > 0).all()


def test_every_cell_comes_once_per_epoch_in_minibatches_from_window_chunks(rows):
    dataset, window, batch_size = RecordingDataset(), 3, 50
    sampler = ChunkWindowSampler(rows, CHUNK_SIZES, window, seed=0)
    minibatches = WindowMinibatches(dataset, sampler, batch_size)
    epochs = []
    for _ in range(2):
        dataset.reads.clear()
        batches = list(minibatches)
        assert len(batches) == len(minibatches) == -(-rows.size // batch_size)
        assert [b["X"].shape[0] for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        positions = np.concatenate([b["labels"].ravel() for b in batches])
        assert sorted(positions.tolist()) == list(range(rows.size))  # every cell exactly once
        np.testing.assert_array_equal(
            np.concatenate([b["X"].toarray().ravel() for b in batches]), positions + 1
        )
        # one read per window; each chunk read in exactly one of them, its rows in increasing order
        assert len(dataset.reads) == len(sampler) == 7
        read_chunks = [chunks_of(rows[read]) for read in dataset.reads]
        assert sum(len(chunks) for chunks in read_chunks) == 19
        assert all((np.diff(rows[read]) > 0).all() for read in dataset.reads)
        # a minibatch draws from its window's chunks; the first of a window may add the fewer than
        # batch_size cells left over from the previous window
        spans = [len(chunks_of(rows[b["labels"].ravel()])) for b in batches]
        assert max(spans) <= 2 * window
        assert sum(span > window for span in spans) <= len(dataset.reads) - 1
        epochs.append(positions)
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch


def test_windows_smaller_than_a_minibatch_fill_it_from_the_next_windows(rows):
    dataset = RecordingDataset()
    sampler = ChunkWindowSampler(rows, CHUNK_SIZES, 1, seed=0)  # ~57 training cells per window
    batches = list(WindowMinibatches(dataset, sampler, 130))
    assert [b["X"].shape[0] for b in batches] == [130] * 8 + [40]
    positions = np.concatenate([b["labels"].ravel() for b in batches])
    assert sorted(positions.tolist()) == list(range(rows.size))
    np.testing.assert_array_equal(np.concatenate([b["X"].toarray().ravel() for b in batches]), positions + 1)
    assert [len(chunks_of(rows[read])) for read in dataset.reads] == [1] * 19  # each chunk read once


def test_drop_last_drops_only_the_smaller_last_minibatch(rows):
    sampler = ChunkWindowSampler(rows, CHUNK_SIZES, 2, seed=0)
    batches = list(WindowMinibatches(RecordingDataset(), sampler, 100, drop_last=True))
    assert len(batches) == 10
    assert {b["X"].shape[0] for b in batches} == {100}


def test_validation_windows_read_the_chunks_in_file_order(rows):
    dataset = RecordingDataset()
    batches = list(WindowMinibatches(dataset, ChunkWindowSampler(rows, CHUNK_SIZES, 5, shuffle=False), 64))
    assert [sorted(chunks_of(rows[read])) for read in dataset.reads][:2] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    positions = np.concatenate([b["labels"].ravel() for b in batches])
    assert (np.diff(rows[positions]) > 0).all()


class ChunkReads(Callback):
    """Counts the chunk reads of dask computes (read_elem_lazy's make_dask_chunk tasks)."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def _pretask(self, key, dsk, state):
        self.reads += isinstance(key, tuple) and str(key[0]).startswith("make_dask_chunk")


@pytest.mark.parametrize(
    ("chunk_window", "used", "reads_per_epoch"), [(3, 3, 10), ("auto", 157, 10), (None, None, None)]
)
def test_training_from_a_lazy_file_reads_each_chunk_once_per_epoch(
    tmp_path, chunk_window, used, reads_per_epoch
):
    path = tmp_path / "lazy.h5ad"
    write_counts(path, 600, 80, per_cell=20)
    adata = cr.read_lazy(path, chunk_size=64)  # 10 chunks
    CellEncoder.setup_anndata(adata)
    torch.manual_seed(0)
    model = CellEncoder(adata, **TINY)
    counter = ChunkReads()
    with counter:
        model.train(max_epochs=2, batch_size=50, train_size=1.0, chunk_window=chunk_window, **QUIET)
    assert model.trainer.global_step == 2 * 12
    assert np.isfinite(model.history["train_loss"].to_numpy()).all()
    assert model.trainer.datamodule.chunk_window == used
    if reads_per_epoch is not None:
        assert counter.reads == 2 * reads_per_epoch  # two epochs, each chunk once
    else:  # scvi-tools' random minibatches: 12 steps of 50 random cells of 10 chunks touch nearly all
        assert counter.reads > 2 * 12 * 8


def test_auto_windows_hold_about_ten_thousand_cells_and_other_data_keeps_random_minibatches(tmp_path):
    assert AUTO_WINDOW_CELLS == 10_000
    assert resolve_chunk_window("auto", (1000,) * 50) == 10
    assert resolve_chunk_window("auto", (10_000,) * 5 + (7,)) == 1
    assert resolve_chunk_window("auto", (64,) * 3) == 157  # more chunks than the file: all of it
    assert resolve_chunk_window(4, (1000,) * 50) == 4
    path = tmp_path / "backed.h5ad"
    write_counts(path, 200, 30, per_cell=5)
    adata = ad.read_h5ad(path, backed="r")
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, **TINY | {"n_token_genes": None})
    model.train(max_steps=2, batch_size=50, chunk_window=3, **QUIET)
    assert model.trainer.datamodule.chunk_window is None


def test_a_bad_chunk_window_is_refused(tmp_path):
    path = tmp_path / "lazy.h5ad"
    write_counts(path, 100, 10, per_cell=3)
    adata = cr.read_lazy(path, chunk_size=20)
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, **TINY | {"n_token_genes": None})
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="chunk_window"):
            model.train(max_steps=1, chunk_window=bad, **QUIET)
