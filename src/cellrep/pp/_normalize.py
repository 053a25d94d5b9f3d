"""Library-size normalization and log1p of AnnData, matching scanpy without densifying."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
from anndata import AnnData

from .._array._normalize import (
    CountRowStats,
    csr_count_row_stats,
    has_count_row_stats,
    log1p_matrix,
    log_scale_for,
    normalize_rows,
)
from .._validation import (
    check_counts,
    check_finite,
    check_matrix_type,
    get_matrix,
    store_params,
    warn_empty_cells,
)
from ._utils import check_copy_inplace, select_matrix, set_matrix

_check_nonnegative = partial(check_counts, require_integer=False)


def _checked_count_rows(matrix, adata: AnnData | None = None) -> CountRowStats | None:
    """Raise unless ``matrix`` holds finite, non-negative values, without writing anything.

    For CSR input of the usual dtypes, the one read that validates also returns the row statistics
    :func:`normalize_rows` needs for ``log``, so the data are read once before being written.
    """
    check_matrix_type(matrix)
    row_stats = None
    if has_count_row_stats(matrix):
        row_stats = csr_count_row_stats(matrix)
        if row_stats.valid:
            return row_stats
    # counts the bad values for the message; passes when the only doubt was a stored -0.0
    _check_nonnegative(matrix, adata=adata)
    return row_stats


def normalize_total(
    adata: AnnData,
    *,
    target_sum: float | None = None,
    layer: str | None = None,
    key_added: str | None = None,
    inplace: bool = True,
    copy: bool = False,
):
    """Scale every cell to the same total count, as :func:`scanpy.pp.normalize_total`.

    One numba pass per row over the stored values; CSR stays CSR, CSC stays CSC (scanpy
    returns CSR for CSC input) and sparse input is never densified. Float32 and float64
    data keep their dtype and are updated in place; integer data becomes float32, as in scanpy;
    float16 and bool data become float32. Sparse input with duplicate entries or unsorted
    indices is normalized as its canonical form (a canonical copy replaces it).
    Library sizes are accumulated in float64.

    Parameters
    ----------
    adata
        Annotated data matrix with non-negative values (counts) in ``X`` or ``layer``.
    target_sum
        Total of every cell afterwards. ``None`` uses the median total of the non-empty
        cells. (scanpy 1.11 takes the median of all cells, empty ones included, for CSR input.)
    layer
        Layer to normalize instead of ``X``.
    key_added
        If given, ``obs[key_added]`` receives the size factor of each cell, that is its
        total count divided by ``target_sum`` (scanpy stores the same value).
    inplace
        Update ``adata``; ``False`` leaves it untouched and returns the normalized matrix.
    copy
        Work on and return a copy of ``adata``. Not compatible with ``inplace=False``.

    Returns
    -------
    The normalized matrix if ``inplace=False`` (same format as the input; scanpy returns a
    dict instead), the copy if ``copy=True``, else ``None``. ``uns['normalize_total']['params']``
    records the target sum used and the layer.

    Warns
    -----
    UserWarning
        When some cells have zero counts; they stay zero.
    """
    check_copy_inplace(copy, inplace)
    check = partial(_check_nonnegative, adata=adata if layer is None else None)
    adata, matrix = select_matrix(adata, layer, copy=copy, modify=inplace, check=check)
    result, totals, used_target = normalize_rows(matrix, target_sum=target_sum, copy=not inplace)
    warn_empty_cells(totals)
    if not inplace:
        return result
    set_matrix(adata, result, layer)
    if key_added is not None:
        adata.obs[key_added] = np.asarray(totals) / used_target
    store_params(
        adata, "normalize_total", {"target_sum": used_target, "layer": layer, "key_added": key_added}
    )
    return adata if copy else None


def log1p(adata: AnnData, *, base: float | None = None, layer: str | None = None, copy: bool = False):
    """Logarithmize ``X = log(1 + X)``, as :func:`scanpy.pp.log1p`.

    Sparse input is transformed on its stored values only, keeping format and sparsity.
    Float data keeps its dtype and is updated in place; integer data becomes float64, as in scanpy;
    float16 and bool data become float32. Sparse input with duplicate entries is summed first
    (a canonical copy replaces it), so ``log1p`` applies to each value, not to its pieces.

    Parameters
    ----------
    adata
        Annotated data matrix.
    base
        Base of the logarithm; ``None`` is the natural logarithm.
    layer
        Layer to transform instead of ``X``.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    The copy if ``copy=True``, else ``None``. Sets ``uns['log1p'] = {'base': base}`` like scanpy.
    """
    log_scale_for(base)  # validates base before anything is touched
    if "log1p" in adata.uns:
        warnings.warn(
            "adata seems to be already log-transformed (uns['log1p'] exists).", UserWarning, stacklevel=2
        )
    adata, matrix = select_matrix(adata, layer, copy=copy, check=check_finite)
    set_matrix(adata, log1p_matrix(matrix, base=base), layer)
    adata.uns["log1p"] = {"base": base}
    return adata if copy else None


def log_normalize(
    adata: AnnData,
    *,
    target_sum: float | None = 1e4,
    base: float | None = None,
    layer: str | None = None,
    copy: bool = False,
):
    """Normalize to ``target_sum`` per cell and take ``log1p``, writing the data once.

    Equals :func:`normalize_total` followed by :func:`log1p` (and so scanpy's pair) up to
    float rounding. CSR data are read twice and written once: a parallel read that validates
    the values (NaN, inf and negative values raise before anything is written) and sums the
    rows, then the pass that scales and logarithmizes them, where integer counts below 256
    take their logs from a per-row table of ``log1p(k * scale)``, which gives the same values.
    Nothing of the data's size is allocated for float input (dense and CSC input are
    validated in a separate read; CSC library sizes need one more). Integer, float16 and bool
    data become float32. Sparse input with duplicate entries or unsorted indices is first
    replaced by a canonical copy (duplicates summed), as every cellrep function does.

    Parameters
    ----------
    adata
        Annotated data matrix with non-negative values (counts) in ``X`` or ``layer``.
    target_sum
        Total of every cell before the log; ``None`` uses the median total of non-empty cells
        (an extra pass over the data).
    base
        Base of the logarithm; ``None`` is the natural logarithm.
    layer
        Layer to transform instead of ``X``.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    The copy if ``copy=True``, else ``None``. Sets ``uns['log1p'] = {'base': base}`` like scanpy
    and ``uns['log_normalize']['params']``.

    Warns
    -----
    UserWarning
        When some cells have zero counts; they stay zero.
    """
    log_scale_for(base)  # validates base before anything is touched
    row_stats = _checked_count_rows(get_matrix(adata, layer), adata if layer is None else None)
    adata, matrix = select_matrix(adata, layer, copy=copy)
    result, totals, used_target = normalize_rows(
        matrix, target_sum=target_sum, log=True, base=base, row_stats=row_stats
    )
    warn_empty_cells(totals)
    set_matrix(adata, result, layer)
    adata.uns["log1p"] = {"base": base}
    store_params(adata, "log_normalize", {"target_sum": used_target, "base": base, "layer": layer})
    return adata if copy else None
