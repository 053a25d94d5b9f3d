"""Dask implementations of the normalization and column-statistics array functions.

Registered on the generics of :mod:`cellrep._array` (see :mod:`._dispatch`). Each runs the
in-memory function on every chunk of cells:

- per-row and element-wise transforms (``normalize_rows``, ``log1p_matrix``, the scaling of
  ``scale_matrix``, ``rank_probit_matrix``) are ``map_blocks`` and stay lazy;
- sums of groups of genes (``aggregate_genes``, behind ``cr.tl.map_orthologs``) are ``map_blocks``
  and stay lazy;
- column statistics (moments, ANOVA and HVG sums) add float64 per-chunk partials in a tree
  reduction and return numpy arrays, as scanpy computes its per-gene vectors.

Values are validated chunk by chunk, with the check the in-memory wrapper runs on the whole
matrix, when the chunk is computed: scanning a lazy matrix first would cost a pass over it.
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
from fast_array_utils import stats
from scipy import sparse

import dask

from .._validation import check_counts, check_dask_layout, check_finite
from ._aggregate import aggregate_genes
from ._dask_blocks import DaskRowBlocks, block_threads, blockwise_sum, map_row_blocks, meta_like, row_bounds
from ._hvg import batch_moments
from ._moments import column_sums, grouped_column_moments, row_sums
from ._normalize import log1p_matrix, median_library_size, normalize_rows, output_dtype
from ._offset import OffsetSparseMatrix, offset_matrix
from ._pearson import (
    PearsonResidualMatrix,
    implicit_pearson_residuals,
    pearson_residual_matrix,
    pearson_residuals_matrix,
)
from ._rank_probit import rank_probit_matrix, warn_constant_cells
from ._scale import column_mean_std, scale_columns, scale_matrix
from ._sctop import (
    add_group_fractions_float32,
    fraction_sums_to_means,
    group_mean_fractions_float32,
    project_onto_basis,
)

_check_nonnegative = partial(check_counts, require_integer=False)


def _checked(check, block):
    check(block, "a chunk of the dask array")
    return block


# ---- column and row statistics ----------------------------------------------------------------


@row_sums.register(da.Array)
def _(matrix) -> np.ndarray:
    return np.asarray(stats.sum(matrix, axis=1, dtype=np.float64).compute(), dtype=np.float64)


@column_sums.register(da.Array)
def _(matrix) -> np.ndarray:
    return np.asarray(stats.sum(matrix, axis=0, dtype=np.float64).compute(), dtype=np.float64)


def _block_grouped_moments(block, groups, *, n_groups, with_squares):
    return grouped_column_moments(_checked(check_finite, block), groups, n_groups, with_squares=with_squares)


@grouped_column_moments.register(da.Array)
def _(matrix, groups=None, n_groups=1, *, with_squares=True):
    groups = (
        np.zeros(matrix.shape[0], dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    )
    return blockwise_sum(_block_grouped_moments, matrix, groups, n_groups=n_groups, with_squares=with_squares)


def _block_batch_moments(block, batches, *, n_batches, clip, expm1_scale, with_positives):
    return batch_moments(
        _checked(check_finite, block),
        batches,
        n_batches,
        clip=clip,
        expm1_scale=expm1_scale,
        with_positives=with_positives,
    )


@batch_moments.register(da.Array)
def _(matrix, batches, n_batches, *, clip=None, expm1_scale=0.0, with_positives=False):
    return blockwise_sum(
        _block_batch_moments,
        matrix,
        np.asarray(batches, dtype=np.int64),
        n_batches=n_batches,
        clip=clip,
        expm1_scale=expm1_scale,
        with_positives=with_positives,
    )


# ---- per-row and element-wise transforms ---------------------------------------------------------


@aggregate_genes.register(da.Array)
def _(matrix, indicator):
    """Lazy: every chunk of cells is aggregated by the in-memory function (same dtype and chunk format)."""
    check_dask_layout(matrix)
    return matrix.map_blocks(
        aggregate_genes.in_memory,
        indicator=indicator,
        chunks=(matrix.chunks[0], (indicator.shape[1],)),
        dtype=matrix.dtype,
        meta=meta_like(matrix, matrix.dtype),
    )


def _normalize_block(block, *, target_sum, log, base, integer_dtype):
    with block_threads():
        _checked(_check_nonnegative, block)
        return normalize_rows(
            block,
            target_sum=target_sum,
            log=log,
            base=base,
            integer_dtype=integer_dtype,
            copy=True,
            share_structure=True,
        )[0]


@normalize_rows.register(da.Array)
def _(matrix, *, target_sum=None, log=False, base=None, integer_dtype=np.float32, copy=False, row_stats=None):
    """Lazy normalization; the row totals are computed only when the median target needs them."""
    totals = None
    if target_sum is None:
        totals = row_sums(matrix)
        target_sum = median_library_size(totals)
    if target_sum <= 0:
        raise ValueError(f"target_sum must be positive, got {target_sum}.")
    dtype = output_dtype(matrix.dtype, integer_dtype)
    result = matrix.map_blocks(
        _normalize_block,
        target_sum=float(target_sum),
        log=log,
        base=base,
        integer_dtype=integer_dtype,
        dtype=dtype,
        meta=meta_like(matrix, dtype),
    )
    if totals is None:
        totals = stats.sum(matrix, axis=1, dtype=np.float64)
    return result, totals, float(target_sum)


def _log1p_block(block, *, base, integer_dtype):
    with block_threads():
        return log1p_matrix(_checked(check_finite, block), base=base, integer_dtype=integer_dtype, copy=True)


@log1p_matrix.register(da.Array)
def _(matrix, *, base=None, integer_dtype=np.float64, copy=False):
    dtype = output_dtype(matrix.dtype, integer_dtype)
    return matrix.map_blocks(
        _log1p_block, base=base, integer_dtype=integer_dtype, dtype=dtype, meta=meta_like(matrix, dtype)
    )


def _scale_block(block, *, mean, std, zero_center, max_value):
    with block_threads():
        return scale_columns(block, mean, std, zero_center=zero_center, max_value=max_value, copy=True)


@scale_matrix.register(da.Array)
def _(matrix, *, zero_center=True, max_value=None, copy=False):
    implicit_center = zero_center and sparse.issparse(matrix._meta)
    if implicit_center and max_value is not None:
        scale_matrix.in_memory(matrix._meta, zero_center=True, max_value=max_value)  # raises the same error
    mean, std = column_mean_std(matrix, ddof=1)
    std[std == 0] = 1.0
    dtype = output_dtype(matrix.dtype, np.float64)
    result = matrix.map_blocks(
        _scale_block,
        mean=mean,
        std=std,
        zero_center=zero_center,
        max_value=max_value,
        dtype=dtype,
        meta=meta_like(matrix, dtype),
    )
    return result, mean, std, implicit_center


def _rank_probit_block(block, *, l2_normalize, dtype):
    import warnings

    with block_threads(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # counted once over all chunks below
        return rank_probit_matrix(_checked(_check_nonnegative, block), l2_normalize=l2_normalize, dtype=dtype)


@rank_probit_matrix.register(da.Array)
def _(matrix, *, l2_normalize=True, dtype=np.float32, n_threads=None) -> DaskRowBlocks:
    """Deltas (lazy, CSR chunks) and per-cell offsets (computed: ``obs`` needs them) of every chunk."""

    dtype = np.dtype(dtype)
    meta = sparse.csr_matrix((0, 0), dtype=dtype)
    results = [
        dask.delayed(_rank_probit_block, pure=True)(chunk, l2_normalize=l2_normalize, dtype=dtype)
        for chunk in matrix.to_delayed().ravel()
    ]
    sizes = matrix.chunks[0]
    deltas = da.concatenate(
        [
            da.from_delayed(
                dask.delayed(getattr)(result, "deltas"), (size, matrix.shape[1]), dtype, meta=meta
            )
            for result, size in zip(results, sizes, strict=True)
        ]
    )
    offsets = da.concatenate(
        [
            da.from_delayed(dask.delayed(getattr)(result, "row_offsets"), (size,), dtype)
            for result, size in zip(results, sizes, strict=True)
        ]
    )
    offsets = offsets.compute()
    if l2_normalize:
        warn_constant_cells(offsets, stacklevel=4)
    return offset_matrix(deltas, offsets)


class DaskOffsetMatrix(DaskRowBlocks):
    """An :class:`OffsetSparseMatrix` whose deltas are a dask array of CSR chunks (offsets in memory)."""

    @property
    def deltas(self) -> da.Array:
        return self.array

    @property
    def row_offsets(self) -> np.ndarray:
        return np.asarray(self.row_values)

    def toarray(self) -> np.ndarray:
        """The dense values (computes the whole matrix: small data only)."""
        return OffsetSparseMatrix(sparse.csr_matrix(self.array.compute()), self.row_offsets).toarray()

    def __getitem__(self, key) -> DaskOffsetMatrix:
        subset = super().__getitem__(key)
        return DaskOffsetMatrix(subset.array, OffsetSparseMatrix, self.row_values, self.dtype)


@offset_matrix.register(da.Array)
def _(deltas, row_offsets) -> DaskOffsetMatrix:
    return DaskOffsetMatrix(deltas, OffsetSparseMatrix, row_offsets, dtype=deltas.dtype)


@project_onto_basis.register(DaskRowBlocks)
def _(values, weights) -> np.ndarray:
    """scTOP scores of every chunk of cells, computed (cells × types is small; labels need them)."""
    weights = np.asarray(weights, dtype=np.float64)
    return map_row_blocks(
        project_onto_basis.in_memory, values, weights.shape[1], np.float64, weights=weights
    ).compute()


def _pearson_chunk(counts, cell_totals, *, gene_totals, total, theta, clip):
    return PearsonResidualMatrix(
        _checked(_check_nonnegative, counts), cell_totals, gene_totals, total, theta, clip
    )


class DaskPearsonResiduals(DaskRowBlocks):
    """A :class:`PearsonResidualMatrix` over dask counts: each chunk of cells is one in memory."""

    @property
    def counts(self) -> da.Array:
        return self.array

    @property
    def cell_totals(self) -> np.ndarray:
        return np.asarray(self.row_values)

    def __getattr__(self, name):  # gene_totals, total, theta, clip: the model shared by every chunk
        if name in ("gene_totals", "total", "theta", "clip"):
            return self.make_block.keywords[name]
        raise AttributeError(name)

    def toarray(self) -> np.ndarray:
        """The dense residuals (computes the whole matrix: small data only)."""
        return self.dense().compute()

    def dense(self) -> da.Array:
        """The dense residuals as a lazy dask array (cells × genes, same cell chunks)."""
        return map_row_blocks(PearsonResidualMatrix.toarray, self, self.shape[1], self.dtype)


@pearson_residual_matrix.register(da.Array)
def _(counts, cell_totals, gene_totals, total, theta, clip) -> DaskPearsonResiduals:
    model = {"gene_totals": np.asarray(gene_totals, dtype=np.float64), "total": float(total)}
    model.update(theta=float(theta), clip=float(clip))
    dtype = np.float32 if counts.dtype == np.float32 else np.float64
    return DaskPearsonResiduals(counts, partial(_pearson_chunk, **model), cell_totals, dtype=dtype)


@implicit_pearson_residuals.register(da.Array)
def _(counts, *, theta=100.0, clip=None) -> DaskPearsonResiduals:
    """Totals in one pass over the counts (computed), residuals per chunk when needed."""
    clip = float(np.sqrt(counts.shape[0])) if clip is None else float(clip)
    cell_totals, gene_totals = dask.compute(
        stats.sum(counts, axis=1, dtype=np.float64), stats.sum(counts, axis=0, dtype=np.float64)
    )
    total = float(cell_totals.sum()) or 1.0
    return pearson_residual_matrix(counts, cell_totals, gene_totals, total, theta, clip)


@pearson_residuals_matrix.register(da.Array)
def _(matrix, *, theta=100.0, clip=None, chunk_size=None, copy=False) -> da.Array:
    return implicit_pearson_residuals(matrix, theta=theta, clip=clip).dense()


def _add_chunk_fractions(sums, chunk, group_codes):
    with block_threads():
        return add_group_fractions_float32(_checked(_check_nonnegative, chunk), group_codes, sums.copy())


@group_mean_fractions_float32.register(da.Array)
def _(matrix, group_codes, n_groups, *, n_threads=None) -> np.ndarray:
    """The chunks are added in turn (a chain, not a tree): the float32 rounding is that of one pass in cell order."""
    group_codes = np.asarray(group_codes)
    sums = np.zeros((n_groups, matrix.shape[1]), dtype=np.float32)
    bounds = row_bounds(matrix)
    for index, chunk in enumerate(matrix.to_delayed().ravel()):
        codes = group_codes[bounds[index] : bounds[index + 1]]
        sums = dask.delayed(_add_chunk_fractions, pure=True)(sums, chunk, codes)
    return fraction_sums_to_means(dask.compute(sums)[0], group_codes)
