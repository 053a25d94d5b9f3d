"""Library-size normalization and log1p on dense, CSR and CSC matrices, never densifying.

Float32 and float64 input keeps its dtype (and is updated in place unless ``copy``);
other dtypes give a new float array of the dtype passed as ``integer_dtype``.
Sparse results keep their format and sparsity structure.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .._kernels._normalize import (
    LOG_TABLE_SIZE,
    log_normalize_major,
    major_count_stats,
    multiply_major,
    multiply_minor,
    normalize_dense_rows,
    normalize_major,
)
from .._settings import numba_threads, settings
from ._dispatch import array_function
from ._moments import is_csc, is_csr, row_sums

LOG1P_CHUNK = 1 << 20  # values per numpy call in log1p_matrix
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def output_dtype(dtype, integer_dtype) -> np.dtype:
    """``dtype`` when it is float32/float64, else ``integer_dtype``."""
    dtype = np.dtype(dtype)
    return dtype if dtype in FLOAT_DTYPES else np.dtype(integer_dtype)


def stored_values(matrix) -> np.ndarray:
    """The array a kernel reads: ``.data`` of a sparse matrix, the array itself when dense."""
    return matrix.data if sparse.issparse(matrix) else np.asarray(matrix)


def output_buffer(matrix, dtype, *, copy: bool) -> np.ndarray:
    """Where a kernel writes: the input's own values when possible (in place), else a new array."""
    values = stored_values(matrix)
    if not copy and values.dtype == dtype and (values.flags.c_contiguous or values.flags.f_contiguous):
        return values
    return np.empty_like(values, dtype=dtype)


def with_values(matrix, values: np.ndarray, *, copy: bool):
    """``matrix`` holding ``values`` (same format and structure); ``copy`` also copies the index arrays."""
    if values is stored_values(matrix):
        return matrix
    if not sparse.issparse(matrix):
        return values
    indices, indptr = (
        (matrix.indices.copy(), matrix.indptr.copy()) if copy else (matrix.indices, matrix.indptr)
    )
    return type(matrix)((values, indices, indptr), shape=matrix.shape)


def _numeric(values: np.ndarray) -> np.ndarray:
    """Boolean values seen as uint8, which the count kernels can compare and convert."""
    return values.view(np.uint8) if values.dtype.kind == "b" else values


@dataclass(frozen=True)
class CountRowStats:
    """What one read of the rows of a CSR matrix found (see :func:`csr_count_row_stats`).

    Attributes
    ----------
    totals
        Float64 row sums.
    max_counts
        Largest value of each row, capped at ``LOG_TABLE_SIZE``, when the row holds only
        non-negative integers; -1 otherwise.
    valid
        Every value is finite and non-negative (a ``-0.0`` also makes it False).
    """

    totals: np.ndarray
    max_counts: np.ndarray
    valid: bool


def has_count_row_stats(matrix) -> bool:
    """Whether :func:`csr_count_row_stats` takes ``matrix``: CSR with integer, bool, float32 or float64 values."""
    return is_csr(matrix) and (matrix.dtype.kind in "iub" or matrix.dtype in FLOAT_DTYPES)


def csr_count_row_stats(matrix) -> CountRowStats:
    """Row sums and value checks of a CSR matrix in one parallel read that writes nothing.

    The checks compare float values as integers of the same width: the largest of these is
    the largest non-negative value (NaN and +inf above every finite one) and a negative one
    means a set sign bit.
    """
    values = _numeric(matrix.data)
    bits = values.view(f"i{values.itemsize}") if values.dtype.kind == "f" else values
    n_rows = matrix.shape[0]
    totals = np.empty(n_rows, dtype=np.float64)
    largest_bits = np.empty(n_rows, dtype=bits.dtype)
    smallest_bits = np.empty(n_rows, dtype=bits.dtype)
    fractional = np.empty(n_rows, dtype=np.bool_)
    with numba_threads():
        major_count_stats(values, bits, matrix.indptr, totals, largest_bits, smallest_bits, fractional)
    largest = largest_bits.view(values.dtype)
    non_negative = smallest_bits >= 0
    counts = non_negative & ~fractional  # NaN is fractional; +inf is a count above the table
    max_counts = np.where(counts, np.minimum(largest.astype(np.float64), LOG_TABLE_SIZE), -1).astype(np.int64)
    valid = bool(non_negative.all() and np.isfinite(largest).all())
    return CountRowStats(totals, max_counts, valid)


def log_scale_for(base: float | None) -> float:
    """Factor turning a natural log into a log of ``base``."""
    if base is None:
        return 1.0
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}.")
    return float(1.0 / np.log(base))


def median_library_size(totals: np.ndarray) -> float:
    """Median of the non-zero totals (1.0 when every cell is empty)."""
    nonzero = totals[totals > 0]
    return float(np.median(nonzero)) if nonzero.size else 1.0


@array_function
def normalize_rows(
    matrix,
    *,
    target_sum: float | None = None,
    log: bool = False,
    base: float | None = None,
    integer_dtype=np.float32,
    copy: bool = False,
    row_stats: CountRowStats | None = None,
    share_structure: bool = False,
) -> tuple[object, np.ndarray, float]:
    """Scale each row to sum to ``target_sum``, optionally followed by ``log1p`` in the same pass.

    Parameters
    ----------
    matrix
        Dense, CSR or CSC matrix with cells as rows.
    target_sum
        Total of every non-empty row afterwards; ``None`` uses the median of non-empty row totals.
    log
        Apply ``log1p`` (of ``base``) to the normalized values in the same pass.
    base
        Logarithm base; ``None`` is the natural log.
    integer_dtype
        Output dtype for non-float input.
    copy
        Leave ``matrix`` untouched and return a new one.
    row_stats
        :func:`csr_count_row_stats` of ``matrix`` if already computed (CSR with ``log`` only),
        which saves a read.
    share_structure
        With ``copy``, the result gets new values but shares ``matrix``'s index arrays (for dask
        chunks, which nothing modifies in place: it saves copying and allocating them).

    Returns
    -------
    ``(result, row_totals, target_sum)``: the normalized matrix (same format), the float64
    row totals before normalization and the target sum used. Empty rows stay zero.
    """
    dtype = output_dtype(stored_values(matrix).dtype, integer_dtype)
    log_scale = log_scale_for(base)
    totals = None
    log_csr = log and is_csr(matrix)  # two passes: row stats (sizing the log tables), then the write
    if log_csr:
        row_stats = row_stats if row_stats is not None else csr_count_row_stats(matrix)
        totals = row_stats.totals
    elif target_sum is None or is_csc(matrix):
        totals = row_sums(matrix)
    if target_sum is None:
        target_sum = median_library_size(totals)
    if target_sum <= 0:
        raise ValueError(f"target_sum must be positive, got {target_sum}.")
    out = output_buffer(matrix, dtype, copy=copy)
    with numba_threads():
        if totals is not None and sparse.issparse(matrix):  # totals known: one multiplying pass
            factors = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
            if log_csr:
                log_normalize_major(
                    _numeric(matrix.data), matrix.indptr, factors, row_stats.max_counts, log_scale, out
                )
            elif is_csc(matrix):  # a CSC row is a minor index
                multiply_minor(matrix.data, matrix.indices, factors, log, log_scale, out)
            else:
                multiply_major(matrix.data, matrix.indptr, factors, out)
        else:
            totals = np.empty(matrix.shape[0], dtype=np.float64)
            if is_csr(matrix):
                normalize_major(matrix.data, matrix.indptr, float(target_sum), out, totals)
            else:
                normalize_dense_rows(np.asarray(matrix), float(target_sum), log, log_scale, out, totals)
    return with_values(matrix, out, copy=copy and not share_structure), totals, float(target_sum)


@array_function
def log1p_matrix(matrix, *, base: float | None = None, integer_dtype=np.float64, copy: bool = False):
    """``log1p(matrix) / log(base)`` element-wise, on stored values only for sparse input.

    Uses numpy's vectorised ``log1p`` (much faster than a scalar ``log1p`` in numba) on
    contiguous chunks, one thread per chunk up to ``cellrep.settings.n_threads``.
    """
    if not sparse.issparse(matrix) and not (matrix.flags.c_contiguous or matrix.flags.f_contiguous):
        matrix = np.ascontiguousarray(matrix)
    dtype = output_dtype(stored_values(matrix).dtype, integer_dtype)
    out = output_buffer(matrix, dtype, copy=copy)
    values, flat_out = stored_values(matrix).ravel(order="K"), out.ravel(order="K")
    log_scale = log_scale_for(base)

    def transform(chunk: slice) -> None:
        np.log1p(values[chunk], out=flat_out[chunk])
        if log_scale != 1.0:
            flat_out[chunk] *= log_scale

    n_threads = settings.n_threads or os.cpu_count() or 1
    chunks = [slice(start, start + LOG1P_CHUNK) for start in range(0, values.size, LOG1P_CHUNK)]
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        list(pool.map(transform, chunks))
    return with_values(matrix, out, copy=copy)
