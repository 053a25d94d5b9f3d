"""Input checks shared by every public function.

Each check raises a ``ValueError`` or ``TypeError`` whose message says what to do, and
never modifies its input, so a failing call leaves the AnnData as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ._settings import numba_threads

SUPPORTED_MATRIX_TYPES = "a numpy ndarray or a scipy CSR/CSC matrix or array"


def get_matrix(adata, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]``, with a clear error for a wrong layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is None; pass `layer=` naming the layer that holds the data.")
        return adata.X
    if layer not in adata.layers:
        available = list(adata.layers.keys()) or "none"
        raise ValueError(
            f"Layer {layer!r} not found in adata.layers (available: {available}). Pass layer=None to use adata.X."
        )
    return adata.layers[layer]


def is_dask_array(matrix) -> bool:
    return type(matrix).__module__.startswith("dask.")


def check_matrix_type(matrix) -> None:
    """Raise a TypeError unless ``matrix`` is dense, CSR or CSC."""
    if is_dask_array(matrix):
        check_dask_layout(matrix)
        return
    if type(matrix).__module__.startswith(("anndata._core.sparse_dataset", "h5py", "zarr")):
        raise TypeError(
            "The data is a backed (on-disk) array, as `read_h5ad(path, backed='r')` gives; cellrep reads "
            "on-disk data as a dask array instead: `adata = cr.read_lazy(path)` (chunks of cells, "
            "`anndata.experimental.read_elem_lazy`), or load it with `adata = adata.to_memory()` if it fits."
        )
    if isinstance(matrix, np.ndarray):
        return
    if sparse.issparse(matrix) and matrix.format in ("csr", "csc"):
        return
    kind = (
        f"a scipy sparse {matrix.format.upper()} matrix" if sparse.issparse(matrix) else type(matrix).__name__
    )
    raise TypeError(
        f"Expected {SUPPORTED_MATRIX_TYPES}, got {kind}. Convert it first, for example with `.tocsr()`."
    )


def check_dask_layout(matrix) -> None:
    """Raise a TypeError unless a dask array is 2-D, chunked along cells only, with dense or CSR chunks."""
    meta = getattr(matrix, "_meta", None)
    if matrix.ndim != 2:
        raise TypeError(f"Expected a 2-dimensional dask array (cells × genes), got {matrix.ndim} dimensions.")
    if sparse.issparse(meta) and meta.format != "csr":
        raise TypeError(
            f"The dask array has {meta.format.upper()} chunks, but cellrep reads cells (rows) from CSR or dense "
            "chunks. Convert every chunk first: `x = x.map_blocks(scipy.sparse.csr_matrix)`."
        )
    if not (sparse.issparse(meta) or isinstance(meta, np.ndarray)):
        raise TypeError(
            f"The dask array has chunks of type {type(meta).__name__}; cellrep needs numpy or scipy CSR chunks "
            "(for example `x.map_blocks(scipy.sparse.csr_matrix)`)."
        )
    if len(matrix.chunks[1]) > 1:
        raise TypeError(
            f"The dask array is chunked along genes ({len(matrix.chunks[1])} gene chunks), but cellrep works on "
            "whole cells. Rechunk along cells only: `x = x.rechunk({1: -1})` (or chunks=(n_cells_per_chunk, -1) "
            "when reading)."
        )


@dataclass(frozen=True)
class ValueScan:
    """What one read of the stored values found."""

    n_non_finite: int
    n_negative: int
    n_non_integer: int


def scan_values(matrix) -> ValueScan:
    """Count the NaN/inf, negative and non-integer stored values in one parallel pass.

    Sparse matrices are scanned on their stored values only (implicit zeros are finite,
    non-negative integers). Allocates nothing of the data's size.
    """
    # imported here so that numba loads on first use, not on `import cellrep`
    from ._kernels._validation import scan_flat, scan_rows

    if is_dask_array(matrix):
        # a lazy matrix is not read here (that would cost a pass): each chunk runs the same
        # check when it is computed, see cellrep._array._dask
        return ValueScan(0, 0, 0)
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.dtype.kind not in "fiub":
        raise TypeError(
            f"Expected numeric data, got dtype {values.dtype}. Convert it with `.astype(np.float32)`."
        )
    if values.dtype.kind == "b":
        values = values.view(np.uint8)
    with numba_threads():
        if values.ndim != 2 or values.flags.c_contiguous or values.flags.f_contiguous:
            counts = scan_flat(values.ravel(order="K"))
        else:
            counts = scan_rows(values)
    return ValueScan(*map(int, counts[:3]))  # the fourth value only kept the read-ahead alive


def _raise_non_finite(scan: ValueScan, what: str) -> None:
    if scan.n_non_finite:
        raise ValueError(
            f"{what} contains {scan.n_non_finite} NaN or infinite values. Remove or impute them before calling this function."
        )


def check_finite(matrix, what: str = "the data") -> None:
    """Raise a ValueError if ``matrix`` holds NaN or infinite values."""
    check_matrix_type(matrix)
    _raise_non_finite(scan_values(matrix), what)


def check_counts(matrix, what: str = "the data", *, require_integer: bool = True) -> ValueScan:
    """Raise a ValueError unless ``matrix`` holds finite, non-negative (integer) counts.

    Returns the :class:`ValueScan` of the data, so callers can react to non-integer values without a second pass.
    """
    check_matrix_type(matrix)
    scan = scan_values(matrix)
    _raise_non_finite(scan, what)
    if scan.n_negative:
        raise ValueError(
            f"{what} contains negative values, but raw counts are needed. "
            "Pass `layer=` naming the layer with raw counts (for example 'counts')."
        )
    if require_integer and scan.n_non_integer:
        raise ValueError(
            f"{what} contains non-integer values, but raw integer counts are needed. "
            "Pass `layer=` naming the layer with raw counts; normalized or log data cannot be used here."
        )
    return scan


def warn_empty_cells(row_totals: np.ndarray, *, stacklevel: int = 3) -> None:
    """Warn, as scanpy does, when some cells have zero total counts (not for lazy totals, which are not computed)."""
    if is_dask_array(row_totals):
        return
    n_empty = int(np.sum(np.asarray(row_totals) == 0))
    if n_empty:
        warnings.warn(
            f"{n_empty} cells have zero counts; their values stay zero. Filter them with `sc.pp.filter_cells(adata, min_counts=1)`.",
            UserWarning,
            stacklevel=stacklevel,
        )


def check_labels(adata, labels_key: str, *, min_cells_per_class: int = 2) -> np.ndarray:
    """Validate a label column and return a boolean mask of usable cells.

    Cells with missing labels and classes with fewer than ``min_cells_per_class`` cells are
    dropped from the mask with a warning. Raises a ValueError if the column is missing or
    fewer than two classes remain.
    """
    if labels_key is None or labels_key not in adata.obs.columns:
        available = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise ValueError(f"labels_key {labels_key!r} is not a column of adata.obs (columns: {available}).")
    labels = adata.obs[labels_key]
    usable = labels.notna().to_numpy()
    if not usable.all():
        warnings.warn(
            f"{(~usable).sum()} cells have a missing {labels_key!r} label and are ignored.",
            UserWarning,
            stacklevel=3,
        )
    counts = labels[usable].astype(str).value_counts()
    rare = counts.index[counts < min_cells_per_class]
    if len(rare):
        warnings.warn(
            f"Classes with fewer than {min_cells_per_class} cells are ignored: {sorted(rare)}.",
            UserWarning,
            stacklevel=3,
        )
        usable &= ~labels.astype(str).isin(rare).to_numpy()
    if pd.unique(labels[usable].astype(str)).size < 2:
        raise ValueError(
            f"{labels_key!r} needs at least two classes with {min_cells_per_class} or more cells each."
        )
    return usable


def check_gene_overlap(
    reference_genes: Sequence[str], query_genes: Sequence[str], *, min_overlap: int | float = 1
) -> np.ndarray:
    """Return the shared genes in reference order; raise when fewer than ``min_overlap`` are shared.

    ``min_overlap`` below 1 is read as a fraction of the reference genes.
    """
    reference_index = pd.Index(reference_genes)
    shared = reference_index[reference_index.isin(pd.Index(query_genes))]
    needed = int(np.ceil(min_overlap * len(reference_index))) if 0 < min_overlap < 1 else int(min_overlap)
    if len(shared) < max(needed, 1):
        raise ValueError(
            f"Only {len(shared)} of {len(reference_index)} reference genes are present in the query "
            f"(at least {max(needed, 1)} needed). Check that both use the same gene identifiers "
            "(symbols vs Ensembl IDs) and species; use `cr.tl.map_orthologs` across species."
        )
    return shared.to_numpy()


def store_params(adata, key: str, params: dict, **results) -> None:
    """Write ``adata.uns[key] = {'params': params, **results}`` in scanpy's convention."""
    adata.uns[key] = {"params": dict(params), **results}
