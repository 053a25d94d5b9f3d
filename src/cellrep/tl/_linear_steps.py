"""Array steps of the linear pipeline: normalization, gene scoring, column statistics, projection.

Every step accepts dense, CSR and CSC counts and keeps sparse data sparse: the log values
stay CSR, rank-probit values stay an :class:`OffsetSparseMatrix`, and centring/scaling is
folded into the projection weights (``((X - m) / s) @ W = X @ (W / s) - (m / s) @ W``).
Only Pearson residuals, dense by nature, are built as a dense block, and only for the
selected genes.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse

from .._array._anova import anova_f_statistics
from .._array._dispatch import array_function, dask_implementations_in
from .._array._moments import column_sums, row_sums
from .._array._normalize import normalize_rows
from .._array._offset import OffsetSparseMatrix
from .._array._pca_operator import column_mean_var
from .._array._rank_probit import rank_probit_matrix
from .._kernels._pearson import pearson_dense_block, pearson_sparse_block
from .._settings import numba_threads

NORMALIZATIONS = ("rank_probit", "log", "pearson")
LOG_TARGET_SUM = 1e4
PEARSON_THETA = 100.0
CHUNK_ROWS = 4096

dask_implementations_in("cellrep.tl._linear_dask")


@array_function
def as_float_matrix(counts):
    """Dense, CSR or CSC counts with a float dtype (int input becomes float64, float stays as is)."""
    if sparse.issparse(counts):
        counts = counts if counts.format in ("csr", "csc") else counts.tocsr()
        return counts if counts.dtype.kind == "f" else counts.astype(np.float64)
    counts = np.asarray(counts)
    return counts if counts.dtype.kind == "f" else counts.astype(np.float64)


def log_values(counts):
    """``log1p`` of counts scaled to ``LOG_TARGET_SUM`` per cell, same format as ``counts``."""
    return normalize_rows(counts, target_sum=LOG_TARGET_SUM, log=True, copy=True)[0]


def select_gene_positions(log_matrix, codes: np.ndarray | None, n_genes: int) -> np.ndarray:
    """Sorted positions of the ``n_genes`` most informative genes.

    With class codes (negative = ignore the cell) genes are ranked by their ANOVA F across
    classes; without, by scanpy's highly-variable-gene dispersion (``flavor='seurat'``).
    """
    from anndata import AnnData

    from ..pp._select import select_genes, top_mask

    every_gene = n_genes >= log_matrix.shape[1]
    n_genes = min(n_genes, log_matrix.shape[1])
    if codes is None:
        with warnings.catch_warnings():
            if every_gene:  # all genes were asked for: those without a dispersion drop out silently
                warnings.filterwarnings(
                    "ignore", message=".*have a normalized dispersion", category=UserWarning
                )
            table = select_genes(
                AnnData(log_matrix), method="hvg", flavor="seurat", n_top=n_genes, inplace=False
            )
        mask = table["selected"].to_numpy(dtype=bool)
    else:
        mask = top_mask(anova_f_statistics(log_matrix, codes), n_genes)
    return np.flatnonzero(mask)


@array_function
def pearson_block(counts, columns: np.ndarray, fractions: np.ndarray, clip: float) -> np.ndarray:
    """Dense Pearson residuals of the genes ``columns``, with library sizes over all genes.

    ``mu = library_size * fraction``; ``fractions`` (one per column) may come from another
    dataset, the reference.
    """
    subset = counts[:, columns]
    library_sizes = row_sums(counts)
    dtype = np.float32 if subset.dtype == np.float32 else np.float64
    out = np.empty((counts.shape[0], columns.size), dtype=dtype)
    fractions = np.ascontiguousarray(fractions, dtype=np.float64)
    arguments = (library_sizes, fractions, 1.0, 1.0 / PEARSON_THETA, clip, 0, out)
    with numba_threads():
        if sparse.issparse(subset):
            subset = sparse.csr_matrix(subset)
            pearson_sparse_block(subset.data, subset.indices, subset.indptr, *arguments)
        else:
            pearson_dense_block(np.ascontiguousarray(subset), *arguments)
    return out


def gene_fractions(counts) -> np.ndarray:
    """Each gene's share of all counts (float64)."""
    totals = column_sums(counts)
    return totals / max(totals.sum(), 1.0)


def normalized_genes(
    counts, normalization: str, gene_index: np.ndarray, *, fractions=None, clip=None, log_matrix=None
):
    """Normalized values of the genes ``gene_index`` (positions in ``counts``; ``-1`` = missing).

    The normalization is computed per cell over all genes of ``counts`` (library size,
    ranks). ``fractions`` (Pearson gene fractions, aligned with ``gene_index``) and ``clip``
    default to those of ``counts``. With missing genes the result is an ``_ExpandedColumns``
    whose missing columns count as the mean.
    """
    present = gene_index >= 0
    columns = gene_index[present]
    if normalization == "pearson":
        fractions = gene_fractions(counts)[columns] if fractions is None else np.asarray(fractions)[present]
        clip = float(np.sqrt(counts.shape[0])) if clip is None else clip
        values = pearson_block(counts, columns, fractions, clip)
    elif normalization == "log":
        values = _select_columns(log_values(counts) if log_matrix is None else log_matrix, columns)
    elif normalization == "rank_probit":
        values = _select_columns(rank_probit_matrix(counts, l2_normalize=True, dtype=np.float32), columns)
    else:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    return values if present.all() else _ExpandedColumns(values, np.flatnonzero(present), gene_index.size)


@array_function
def _select_columns(values, columns: np.ndarray):
    if isinstance(values, OffsetSparseMatrix):
        return values[:, columns]
    if sparse.issparse(values):
        return sparse.csr_matrix(values)[:, columns]
    return np.asarray(values)[:, columns]


@array_function
def reusable(values):
    """``values`` ready to be read by several passes; in memory: ``values`` itself.

    A lazy (dask) matrix is computed once and held in memory when it fits
    (:func:`cellrep._array._dask_blocks.persisted_if_fits`), so that the column statistics, the
    PCA and the scores do not each read and normalize the counts again.
    """
    return values


class _ExpandedColumns:
    """A matrix whose columns ``positions`` are ``values`` and whose other columns are missing (0)."""

    def __init__(self, values, positions: np.ndarray, n_columns: int) -> None:
        self.values, self.positions, self.shape = values, positions, (values.shape[0], n_columns)


def column_statistics(values) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and standard deviation (ddof=1, zeros replaced by 1) of every column."""
    if isinstance(values, _ExpandedColumns):
        mean, std = np.zeros(values.shape[1]), np.ones(values.shape[1])
        mean[values.positions], std[values.positions] = column_statistics(values.values)
        return mean, std
    mean, variance = column_mean_var(values, ddof=1)
    std = np.sqrt(variance)
    return mean, np.where(std > 0, std, 1.0)


def clipped_standardized(
    values, means: np.ndarray, scales: np.ndarray, max_value: float, rows: slice
) -> np.ndarray:
    """Dense ``clip((values[rows] - means) / scales, -max_value, max_value)`` for a block of rows."""
    block = values[rows]
    # a fresh float64 block, then in place: one block of memory, not four
    block = block.toarray() if hasattr(block, "toarray") else np.array(block)
    block = block.astype(np.float64, copy=False)
    block -= means
    block /= scales
    return np.clip(block, -max_value, max_value, out=block)


@array_function
def standardized_product(
    values, means: np.ndarray, scales: np.ndarray, weights: np.ndarray, *, max_value: float | None = None
) -> np.ndarray:
    """``((values - means) / scales) @ weights``, optionally clipped to ``±max_value`` before the product.

    Without clipping the centred matrix is never built; with clipping (a non-linear step)
    dense blocks of ``CHUNK_ROWS`` cells × selected genes are. Missing columns of an
    ``_ExpandedColumns`` count as the mean, i.e. contribute zero.
    """
    if isinstance(values, _ExpandedColumns):
        positions = values.positions
        return standardized_product(
            values.values, means[positions], scales[positions], weights[positions], max_value=max_value
        )
    if max_value is not None:
        n_rows = values.shape[0]
        product = np.empty((n_rows, weights.shape[1]))
        for start in range(0, n_rows, CHUNK_ROWS):
            rows = slice(start, min(start + CHUNK_ROWS, n_rows))
            product[rows] = clipped_standardized(values, means, scales, max_value, rows) @ weights
        return product
    scaled_weights = weights / scales[:, None]
    product = np.asarray(values @ scaled_weights, dtype=np.float64)
    return product - (means / scales) @ weights


@array_function
def clipped_matrix(values, means: np.ndarray, scales: np.ndarray, max_value: float) -> np.ndarray:
    """The dense clipped standardized values (float32), built block by block."""
    n_rows = values.shape[0]
    dense = np.empty(values.shape, dtype=np.float32)
    for start in range(0, n_rows, CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, n_rows))
        dense[rows] = clipped_standardized(values, means, scales, max_value, rows)
    return dense
