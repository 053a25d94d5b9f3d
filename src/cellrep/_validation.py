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


# values within this distance of an integer, relative to max(1, |value|), count as integer counts
COUNT_TOLERANCE = 1e-6
# dtypes the numba kernels do not compile for, and the dtype they are converted to (exactly)
UPCAST_DTYPES = {np.dtype(np.float16): np.float32, np.dtype(np.bool_): np.float32}
SUPPORTED_DTYPES = (
    "float32, float64, float16 or bool (converted to float32), and the signed and unsigned integer types"
)
BACKED_ADVICE = (
    "Load it into memory with `adata = adata.to_memory()` if it fits (or subset first: "
    "`adata[cells].to_memory()`), or read the file lazily as a dask array of cell chunks, which cellrep "
    "processes chunk by chunk: `adata = cr.read_lazy(path)` (`anndata.experimental.read_elem_lazy`)."
)


def stored_matrix(adata, layer: str | None = None):
    """``adata.X`` or ``adata.layers[layer]`` exactly as stored, with a clear error for a wrong layer or backed data."""
    if layer is None:
        if getattr(adata, "isbacked", False):
            raise TypeError(
                f"adata is backed (read with backed='r'), so adata.X is still on disk. {BACKED_ADVICE}"
            )
        if adata.X is None:
            raise ValueError("adata.X is None; pass `layer=` naming the layer that holds the data.")
        return adata.X
    if layer not in adata.layers:
        available = list(adata.layers.keys()) or "none"
        raise ValueError(
            f"Layer {layer!r} not found in adata.layers (available: {available}). Pass layer=None to use adata.X."
        )
    return adata.layers[layer]


def get_matrix(adata, layer: str | None = None):
    """``adata.X`` or ``adata.layers[layer]`` ready for the kernels: the one read every public function uses.

    The stored matrix is checked (:func:`check_matrix_type`) and, when needed, a converted
    copy is returned (:func:`as_kernel_input`): float16 and bool become float32, sparse
    matrices with duplicate entries or unsorted indices become canonical. The stored matrix
    itself is never modified.
    """
    return as_kernel_input(stored_matrix(adata, layer))


def as_kernel_input(matrix):
    """``matrix`` in a form every kernel reads correctly, copying only when it must.

    - float16 and bool values are converted to float32 (exact); other numeric dtypes are kept;
      non-numeric dtypes raise a TypeError naming the supported ones.
    - CSR/CSC matrices with duplicate entries or unsorted indices (scipy allows both) are
      replaced by a canonical copy (duplicates summed, indices sorted), so every function
      gives the result of the canonical matrix.
    - A dask array gets the same conversion per chunk, lazily (a ``map_blocks`` that dask fuses
      with the work on the chunk).
    """
    check_matrix_type(matrix)
    dtype = matrix.dtype
    if dtype.kind not in "fiub":
        raise TypeError(
            f"Expected numeric data, got dtype {dtype}. Supported: {SUPPORTED_DTYPES}. "
            "Convert it with `.astype(np.float32)`."
        )
    target = UPCAST_DTYPES.get(dtype)
    if is_dask_array(matrix):  # the same conversion, lazily, chunk by chunk
        meta = matrix._meta
        out_dtype = np.dtype(target or dtype)
        meta = type(meta)((0, 0), dtype=out_dtype) if sparse.issparse(meta) else np.empty((0, 0), out_dtype)
        return matrix.map_blocks(as_kernel_input, dtype=out_dtype, meta=meta)
    if sparse.issparse(matrix):
        canonical = matrix.has_canonical_format
        if target is not None or not canonical:
            matrix = matrix.astype(target or dtype, copy=True)
        if not canonical:
            matrix.sum_duplicates()  # on the copy; also sorts the indices
        return matrix
    return matrix if target is None else np.asarray(matrix).astype(target)


def is_dask_array(matrix) -> bool:
    return type(matrix).__module__.startswith("dask.")


def check_matrix_type(matrix) -> None:
    """Raise a TypeError unless ``matrix`` is dense, CSR or CSC."""
    if is_dask_array(matrix):
        check_dask_layout(matrix)
        return
    if type(matrix).__module__.startswith(("anndata._core.sparse_dataset", "h5py", "zarr")):
        raise TypeError(
            f"The data is a backed (on-disk) array, as `read_h5ad(path, backed='r')` gives. {BACKED_ADVICE}"
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


def count_non_integer(matrix, tolerance: float = COUNT_TOLERANCE) -> int:
    """Number of stored values farther than ``tolerance * max(1, |value|)`` from an integer.

    Only called when the scan found non-integer values, so its temporaries cost nothing on valid counts.
    """
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.dtype.kind != "f":
        return 0
    values = values.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        return int(
            np.count_nonzero(
                ~(np.abs(values - np.rint(values)) <= tolerance * np.maximum(1.0, np.abs(values)))
            )
        )


def raw_counts_hint(adata) -> str:
    """A pointer to ``adata.raw`` when it holds non-negative integer counts, else ``''``."""
    raw = getattr(adata, "raw", None)
    if raw is None or raw.X is None:
        return ""
    try:
        scan = scan_values(as_kernel_input(raw.X))
    except (TypeError, ValueError):
        return ""
    if scan.n_non_finite or scan.n_negative or scan.n_non_integer:
        return ""
    return (
        " adata.raw holds raw counts: run on `adata.raw.to_adata()`, or store them as a layer "
        "(`adata.layers['counts'] = adata.raw[:, adata.var_names].X`) and pass layer='counts'."
    )


def check_counts(matrix, what: str = "the data", *, require_integer: bool = True, adata=None) -> ValueScan:
    """Raise a ValueError unless ``matrix`` holds finite, non-negative (integer) counts.

    Values within ``COUNT_TOLERANCE`` (1e-6) of an integer, relative to ``max(1, |value|)``,
    count as integers (float round-off such as ``1 + 1e-7`` after a unit conversion).
    ``adata`` is the AnnData whose ``X`` is ``matrix``: when given, the error says whether
    ``adata.raw`` holds the counts. Returns the :class:`ValueScan` of the data, so callers can
    react to non-integer values without a second pass (``n_non_integer`` counts exact non-integers).
    """
    check_matrix_type(matrix)
    scan = scan_values(matrix)
    _raise_non_finite(scan, what)
    if scan.n_negative:
        raise ValueError(
            f"{what} contains negative values, but raw counts are needed. "
            "Pass `layer=` naming the layer with raw counts (for example 'counts')." + raw_counts_hint(adata)
        )
    if require_integer and scan.n_non_integer and count_non_integer(matrix):
        raise ValueError(
            f"{what} contains non-integer values, but raw integer counts are needed. "
            "Pass `layer=` naming the layer with raw counts; normalized or log data cannot be used here."
            + raw_counts_hint(adata)
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
    n_classes = pd.unique(labels[usable].astype(str)).size
    if n_classes < 2:
        raise ValueError(
            f"{labels_key!r} needs at least two classes with {min_cells_per_class} or more cells each, but has "
            f"{n_classes} (missing labels and smaller classes are ignored). Check that labels_key names the cell "
            "types, or pass data with more labelled cells."
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
