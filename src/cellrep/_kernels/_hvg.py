"""Per-batch column sums, sums of squares and positive counts for highly variable genes.

Every value is read once, in place, from CSR, CSC or dense storage: optionally un-logged
(``expm1(value * expm1_scale)`` unless ``expm1_scale == 0``, for the ``'seurat'`` dispersions),
then capped at ``clip[batch, column]`` (the ``'seurat_v3'`` pass over clipped counts; a
zero-length last axis caps nothing) and accumulated in float64. ``positives`` counts the raw values > 0
(genes expressed per batch) and may have a zero-length last axis to skip the count. Rows
whose batch is negative are skipped. Implicit zeros add nothing: ``expm1(0) = 0`` and every
clip value is >= 0.

Kernels that scatter into shared columns give each thread its own block of rows and its own
slice of the outputs (first axis = block); the caller adds the blocks up.
"""

import numba
import numpy as np

# A cell's values take few distinct levels (counts 1, 2, ... times its size factor): about 4
# per cell, in some 70 runs, on 450 stored values of the benchmark's counts. A small cache keyed
# by the value's bits keeps each un-logging (an expm1) for later entries: the moments of log
# data then cost little more than those of plain values (18 vs 12 ms per 10 000-cell chunk,
# where reusing only equal neighbours took 34 ms: benchmarks/profile_dask_tasks.py).
CACHE_BITS = 6
CACHE_SLOTS = 1 << CACHE_BITS


@numba.njit(inline="always")
def _transform(raw, expm1_scale, float32_values):
    value = np.float64(raw)
    if expm1_scale != 0:
        scaled = value * expm1_scale
        if float32_values:  # round like scanpy, which un-logs float32 data in float32
            scaled = np.float64(np.float32(scaled))
        value = np.expm1(scaled)
        if float32_values:
            value = np.float64(np.float32(value))
    return value


@numba.njit(inline="always")
def _new_cache():
    # every key starts as the bits of 0, whose un-logged value is 0
    return np.zeros(CACHE_SLOTS, dtype=np.uint64), np.zeros(CACHE_SLOTS)


@numba.njit(inline="always")
def _cached_transform(raw, raw_bits, cached_bits, cached_value, expm1_scale, float32_values):
    """:func:`_transform` of ``raw``, kept in a direct-mapped cache keyed by its bits ``raw_bits``.

    (The cache's two arrays are passed separately: a tuple of arrays made each call 8x slower.)
    """
    if expm1_scale == 0:
        return np.float64(raw)
    key = np.uint64(raw_bits)
    # Knuth's multiplicative hash of the bits folded to 32 (the product stays below 2**64, no wrap-around)
    folded = (key ^ (key >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    slot = ((folded * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)) >> np.uint64(32 - CACHE_BITS)
    if cached_bits[slot] != key:
        cached_bits[slot] = key
        cached_value[slot] = _transform(raw, expm1_scale, float32_values)
    return cached_value[slot]


@numba.njit(inline="always")
def _add_values(
    data,
    bits,
    indices,
    start,
    stop,
    cached_bits,
    cached_value,
    expm1_scale,
    float32_values,
    clip,
    sums,
    squares,
    positives,
):
    """Add the transformed values ``data[start:stop]`` at columns ``indices[...]`` (1-D outputs of one batch)."""
    clipped = clip.size > 0
    counted = positives.size > 0
    for j in range(start, stop):
        raw = data[j]
        column = indices[j]
        value = _cached_transform(raw, bits[j], cached_bits, cached_value, expm1_scale, float32_values)
        if clipped:
            value = min(value, clip[column])
        sums[column] += value
        squares[column] += value * value
        if counted and raw > 0:
            positives[column] += 1


@numba.njit(parallel=True, cache=True)
def blocked_csr_batch_moments(
    data, bits, indices, indptr, batches, clip, expm1_scale, float32_values, sums, squares, positives
):
    """CSR: ``sums``, ``squares`` and ``positives`` of shape ``(block, batch, column)``.

    ``bits`` is ``data`` viewed as unsigned integers of the same width (``data`` itself if it
    holds integers). ``clip`` is ``(batch, column)`` or has a zero-length last axis for no cap.
    """
    n_blocks = sums.shape[0]
    n_rows = indptr.size - 1
    for block in numba.prange(n_blocks):
        cached_bits, cached_value = _new_cache()
        for i in range(block * n_rows // n_blocks, (block + 1) * n_rows // n_blocks):
            batch = batches[i]
            if batch < 0:
                continue
            _add_values(
                data, bits, indices, indptr[i], indptr[i + 1], cached_bits, cached_value, expm1_scale, float32_values,
                clip[batch], sums[block, batch], squares[block, batch], positives[block, batch],
            )  # fmt: skip


@numba.njit(parallel=True, cache=True)
def csc_batch_moments(
    data, bits, indices, indptr, batches, clip, expm1_scale, float32_values, sums, squares, positives
):
    """CSC (one thread per column, no blocks): outputs of shape ``(batch, column)``."""
    clipped = clip.shape[1] > 0
    counted = positives.shape[1] > 0
    for c in numba.prange(indptr.size - 1):
        cached_bits, cached_value = _new_cache()
        for j in range(indptr[c], indptr[c + 1]):
            batch = batches[indices[j]]
            if batch < 0:
                continue
            raw = data[j]
            value = _cached_transform(raw, bits[j], cached_bits, cached_value, expm1_scale, float32_values)
            if clipped:
                value = min(value, clip[batch, c])
            sums[batch, c] += value
            squares[batch, c] += value * value
            if counted and raw > 0:
                positives[batch, c] += 1


@numba.njit(parallel=True, cache=True)
def blocked_dense_batch_moments(
    x, bits, batches, clip, expm1_scale, float32_values, sums, squares, positives
):
    """Dense rows: ``sums``, ``squares`` and ``positives`` of shape ``(block, batch, column)``."""
    n_blocks = sums.shape[0]
    n_rows = x.shape[0]
    columns = np.arange(x.shape[1])
    for block in numba.prange(n_blocks):
        cached_bits, cached_value = _new_cache()
        for i in range(block * n_rows // n_blocks, (block + 1) * n_rows // n_blocks):
            batch = batches[i]
            if batch < 0:
                continue
            _add_values(
                x[i], bits[i], columns, 0, x.shape[1], cached_bits, cached_value, expm1_scale, float32_values,
                clip[batch], sums[block, batch], squares[block, batch], positives[block, batch],
            )  # fmt: skip
