"""Dask implementations of the linear pipeline's array steps (:mod:`._linear_steps`).

Each step is row-wise (cells are normalized, standardized and projected independently), so
on a dask-backed matrix it is the in-memory step applied to every chunk of cells, lazily.
Registered on the generics of :mod:`._linear_steps`; imported on the first dask input.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .._array._dask_blocks import DaskRowBlocks, map_row_blocks, persisted_if_fits
from ._linear_steps import (
    _select_columns,
    as_float_matrix,
    clipped_matrix,
    pearson_block,
    reusable,
    standardized_product,
)


@as_float_matrix.register(da.Array)
def _(counts):
    return counts if counts.dtype.kind == "f" else counts.astype(np.float64)


@_select_columns.register(da.Array)
@_select_columns.register(DaskRowBlocks)
def _(values, columns):
    return values[:, np.asarray(columns)]


@pearson_block.register(da.Array)
def _(counts, columns, fractions, clip):
    dtype = np.float32 if counts.dtype == np.float32 else np.float64
    return map_row_blocks(
        pearson_block.in_memory,
        counts,
        len(columns),
        dtype,
        columns=np.asarray(columns),
        fractions=np.asarray(fractions),
        clip=clip,
    )


@standardized_product.register(da.Array)
@standardized_product.register(DaskRowBlocks)
def _(values, means, scales, weights, *, max_value=None):
    return map_row_blocks(
        standardized_product.in_memory,
        values,
        weights.shape[1],
        np.float64,
        means=means,
        scales=scales,
        weights=weights,
        max_value=max_value,
    )


@clipped_matrix.register(da.Array)
@clipped_matrix.register(DaskRowBlocks)
def _(values, means, scales, max_value):
    return map_row_blocks(
        clipped_matrix.in_memory,
        values,
        values.shape[1],
        np.float32,
        means=means,
        scales=scales,
        max_value=max_value,
    )


@reusable.register(da.Array)
@reusable.register(DaskRowBlocks)
def _(values):
    return persisted_if_fits(values)
