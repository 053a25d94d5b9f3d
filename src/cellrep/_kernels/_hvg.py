"""Per-batch column sums, sums of squares and positive counts for highly variable genes.

Every value is read once, in place, from CSR, CSC or dense storage: optionally un-logged
(``expm1(value * expm1_scale)`` unless ``expm1_scale == 0``, for the ``'seurat'`` dispersions),
then capped at ``clip[batch, column]`` (the ``'seurat_v3'`` pass over clipped counts; pass
``inf`` for no cap) and accumulated in float64. ``positives`` counts the raw values > 0
(genes expressed per batch) and may have a zero-length last axis to skip the count. Rows
whose batch is negative are skipped. Implicit zeros add nothing: ``expm1(0) = 0`` and every
clip value is >= 0.

Kernels that scatter into shared columns give each thread its own block of rows and its own
slice of the outputs (first axis = block); the caller adds the blocks up.
"""

import numba
import numpy as np


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
def _add(sums, squares, positives, batch, column, raw, clip, expm1_scale, float32_values):
    _add_transformed(sums, squares, positives, batch, column, raw, _transform(raw, expm1_scale, float32_values), clip)


@numba.njit(inline="always")
def _add_transformed(sums, squares, positives, batch, column, raw, transformed, clip):
    value = min(transformed, clip[batch, column])
    sums[batch, column] += value
    squares[batch, column] += value * value
    if positives.shape[1] > 0 and raw > 0:
        positives[batch, column] += 1


@numba.njit(parallel=True, cache=True)
def blocked_csr_batch_moments(
    data, indices, indptr, batches, clip, expm1_scale, float32_values, sums, squares, positives
):
    """CSR: ``sums``, ``squares`` and ``positives`` of shape ``(block, batch, column)``."""
    n_blocks = sums.shape[0]
    n_rows = indptr.size - 1
    for block in numba.prange(n_blocks):
        block_sums, block_squares, block_positives = sums[block], squares[block], positives[block]
        for i in range(block * n_rows // n_blocks, (block + 1) * n_rows // n_blocks):
            batch = batches[i]
            if batch < 0:
                continue
            # A cell's values take few distinct levels (counts 1, 2, ... times its size factor),
            # so the un-logging (an expm1 per value, most of the time) is reused between equal neighbours.
            last_raw = np.nan
            last_value = np.nan
            for j in range(indptr[i], indptr[i + 1]):
                raw = data[j]
                if raw != last_raw:
                    last_raw = raw
                    last_value = _transform(raw, expm1_scale, float32_values)
                _add_transformed(block_sums, block_squares, block_positives, batch, indices[j], raw, last_value, clip)


@numba.njit(parallel=True, cache=True)
def csc_batch_moments(
    data, indices, indptr, batches, clip, expm1_scale, float32_values, sums, squares, positives
):
    """CSC (one thread per column, no blocks): outputs of shape ``(batch, column)``."""
    for c in numba.prange(indptr.size - 1):
        for j in range(indptr[c], indptr[c + 1]):
            batch = batches[indices[j]]
            if batch < 0:
                continue
            _add(sums, squares, positives, batch, c, data[j], clip, expm1_scale, float32_values)


@numba.njit(parallel=True, cache=True)
def blocked_dense_batch_moments(x, batches, clip, expm1_scale, float32_values, sums, squares, positives):
    """Dense rows: ``sums``, ``squares`` and ``positives`` of shape ``(block, batch, column)``."""
    n_blocks = sums.shape[0]
    n_rows = x.shape[0]
    for block in numba.prange(n_blocks):
        block_sums, block_squares, block_positives = sums[block], squares[block], positives[block]
        for i in range(block * n_rows // n_blocks, (block + 1) * n_rows // n_blocks):
            batch = batches[i]
            if batch < 0:
                continue
            for c in range(x.shape[1]):
                _add(
                    block_sums,
                    block_squares,
                    block_positives,
                    batch,
                    c,
                    x[i, c],
                    clip,
                    expm1_scale,
                    float32_values,
                )
