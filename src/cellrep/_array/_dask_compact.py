"""Counts held in the dask workers' memory in a compact encoding, decoded chunk by chunk on use.

A lazily read count matrix is read from disk again by every pass over it (the gene selection,
the subset of selected genes, the reference of a transfer). Holding it in memory as float32 CSR
takes 8 bytes per stored value (value and int32 gene index). Counts are small integers and a
chunk has at most a few tens of thousands of genes, so the smallest unsigned integer types that
hold them (``uint8``/``uint16`` values, ``uint16`` gene indices) take 2–4 bytes: one read of the
file, and every later pass decodes the held chunk (a cast, a few milliseconds) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.sizeof import sizeof


@dataclass(frozen=True, eq=False)
class CompactCSR:
    """One CSR chunk with its values and gene indices in the smallest dtypes that hold them exactly."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]
    dtype: np.dtype  # of the decoded values
    kind: type  # csr_matrix or csr_array

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes


@sizeof.register(CompactCSR)
def _sizeof_compact(block: CompactCSR) -> int:  # so that the workers' memory manager counts it
    return block.nbytes


def smallest_unsigned(maximum: int) -> np.dtype:
    """The smallest of ``uint8``, ``uint16``, ``uint32`` that holds ``maximum``, else ``uint64``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if maximum <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _compact_values(data: np.ndarray) -> np.ndarray:
    """``data`` as unsigned integers if every value is a non-negative integer, else unchanged."""
    if data.dtype.kind not in "iuf":  # booleans, complex: held as they are
        return data
    if data.size == 0:
        return data.astype(np.uint8)
    if np.issubdtype(data.dtype, np.integer):
        is_counts = data.min() >= 0
    else:  # -0.0 is not a count: its sign would be lost
        is_counts = (
            bool(np.all(np.isfinite(data)))
            and data.min() >= 0
            and not np.signbit(data).any()
            and bool(np.all(data == np.floor(data)))
        )
    if not is_counts or data.max() > np.iinfo(np.uint32).max:
        return data
    return data.astype(smallest_unsigned(int(data.max())))


def encode_block(block) -> CompactCSR:
    """A CSR chunk (scipy ``csr_matrix`` or ``csr_array``) as :class:`CompactCSR`."""
    block = block.tocsr() if block.format != "csr" else block
    n_genes = block.shape[1]
    return CompactCSR(
        data=_compact_values(block.data),
        indices=block.indices.astype(smallest_unsigned(max(n_genes - 1, 0)), copy=False),
        indptr=block.indptr.copy(),
        shape=block.shape,
        dtype=block.dtype,
        kind=type(block),
    )


def decode_block(block: CompactCSR):
    """The CSR chunk that :func:`encode_block` encoded, with its original value dtype (bitwise equal)."""
    index_dtype = np.int64 if block.indptr[-1] > np.iinfo(np.int32).max else np.int32
    return block.kind(
        (
            block.data.astype(block.dtype),
            block.indices.astype(index_dtype),
            block.indptr.astype(index_dtype, copy=False),
        ),
        shape=block.shape,
    )


def _nbytes_of(block: CompactCSR) -> np.ndarray:
    return np.array([[block.nbytes]], dtype=np.int64)


def persist_compact(array: da.Array) -> tuple[da.Array, int]:
    """``array`` (CSR chunks) computed once and held compactly, as a lazy decoded array.

    Returns the dask array, with the same shape, chunks, dtype and chunk type as ``array``, whose
    tasks decode the held chunks (on the workers that hold them, under ``dask.distributed``),
    and the bytes held.
    """
    encoded = array.map_blocks(encode_block, dtype=array.dtype, meta=np.empty((0, 0), dtype=array.dtype))
    encoded = encoded.persist()
    held = encoded.map_blocks(_nbytes_of, dtype=np.int64, chunks=(1, 1), meta=np.empty((0, 0), dtype=np.int64))
    decoded = encoded.map_blocks(decode_block, dtype=array.dtype, meta=array._meta)
    return decoded, int(held.sum().compute())
