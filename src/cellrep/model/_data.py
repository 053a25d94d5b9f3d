"""Count matrices that stay on disk: a backed AnnData or a lazily loaded one (dask X) as training data.

scvi-tools' ``AnnTorchDataset`` already reads minibatches from both: from a backed file
(``anndata.read_h5ad(path, backed='r')``; rows sorted per batch and read through h5py) and
from a dask array (``X[rows].compute()`` reads the chunks those rows fall in; training reads
windows of chunks instead, see ``_windows``). What is left here is small: a dask array of CSR chunks yields scipy matrices, which :func:`collate` turns
into tensors, and the statistics the encoder takes from its training cells at construction
are computed on a bounded random sample of cells read from disk (:func:`statistics_counts`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from torch.utils.data._utils.collate import default_convert

from .._validation import check_counts, get_matrix, is_dask_array

# cells read from disk for the statistics of the initialisation (about 400 MB of float32 CSR at 2 500
# non-zeros per cell); the whole matrix when it has fewer cells
STATISTICS_SAMPLE = 20_000
SAMPLE_SEED = 0


def is_on_disk(counts) -> bool:
    """A backed (h5py-read) matrix or a dask array, which scvi-tools slices per minibatch."""
    from anndata.abc import CSCDataset, CSRDataset

    if is_dask_array(counts):
        return True
    import h5py

    return isinstance(counts, CSRDataset | CSCDataset | h5py.Dataset)


def stored_counts(adata, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]`` as stored (nothing is read from disk); None if absent."""
    if layer is None:
        return adata.X
    return adata.layers.get(layer, None)


def check_counts_to_register(adata, layer: str | None) -> None:
    """Raise unless the counts are raw integer counts scvi-tools can read by minibatch.

    In memory every value is checked; on disk a sample of :data:`STATISTICS_SAMPLE` cells
    (read once, in increasing order).
    """
    counts = stored_counts(adata, layer)
    what = "the counts passed to CellEncoder.setup_anndata"
    if is_on_disk(counts):
        check_on_disk(adata, counts)
        sample = sample_rows(counts, STATISTICS_SAMPLE)
        check_counts(sample, f"a sample of {sample.shape[0]} cells of {what}")
        return
    counts = get_matrix(adata, layer)
    check_counts(counts, what)
    if sparse.issparse(counts) and not sparse.isspmatrix(counts):
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        raise TypeError(
            f"scvi-tools registers scipy sparse matrices, not sparse arrays: convert first with "
            f"`{where} = scipy.sparse.csr_matrix({where})`."
        )


def check_on_disk(adata, counts) -> None:
    """Raise a TypeError for what the minibatch reads cannot use: gene-compressed data, lazy ``obs``."""
    import pandas as pd
    from anndata.abc import CSCDataset

    if isinstance(counts, CSCDataset) or (
        is_dask_array(counts) and sparse.issparse(counts._meta) and counts._meta.format == "csc"
    ):
        raise TypeError(
            "The counts on disk are CSC (gene-compressed), so every minibatch of cells would read the "
            "whole file: write them as CSR first (`adata.X = scipy.sparse.csr_matrix(adata.X)`, once, "
            "in memory or chunk by chunk)."
        )
    if is_dask_array(counts) and len(counts.chunks[1]) > 1:
        raise TypeError(
            "The dask counts are chunked along genes; chunk along cells only: `X.rechunk({1: -1})`."
        )
    if not isinstance(adata.obs, pd.DataFrame):
        raise TypeError(
            "adata.obs is lazy (anndata.experimental.read_lazy); scvi-tools registers pandas columns: read "
            "the file with `cr.read_lazy(path)` (X lazy, obs in memory) or set `adata.obs = adata.obs.to_memory()`."
        )


def sample_rows(counts, n_cells: int, seed: int = SAMPLE_SEED) -> sparse.csr_matrix:
    """At most ``n_cells`` random rows of an on-disk matrix (all rows when it has fewer), as CSR.

    The rows are read in increasing order (h5py needs it; dask reads each chunk once).
    """
    n_obs = counts.shape[0]
    if n_obs <= n_cells:
        rows = np.arange(n_obs)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n_obs, size=n_cells, replace=False))
    block = counts[rows]
    if is_dask_array(block):
        block = block.compute()
    return sparse.csr_matrix(block)


def statistics_counts(adata_manager) -> sparse.csr_matrix:
    """The counts the initialisation statistics come from: all cells in memory, or a sample from disk."""
    counts = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    if is_on_disk(counts):
        return sample_rows(counts, STATISTICS_SAMPLE)
    return sparse.csr_matrix(counts)


def collate(batch: dict) -> dict:
    """A minibatch of scvi-tools' dataset as tensors; scipy matrices (from dask CSR chunks) become dense."""
    return {
        key: torch.as_tensor(value.toarray(), dtype=torch.float32)
        if sparse.issparse(value)
        else default_convert(value)
        for key, value in batch.items()
    }


def loader_kwargs(adata_manager) -> dict:
    """Data-loader arguments for the registered counts: :func:`collate` for a dask array."""
    counts = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    return {"collate_fn": collate} if is_dask_array(counts) else {}
