"""Analytic Pearson residuals of AnnData counts (Lause et al. 2021), numba in row chunks."""

from __future__ import annotations

import warnings

import numpy as np
from anndata import AnnData

from .._array._pearson import DEFAULT_CHUNK_SIZE, pearson_residuals_matrix
from .._validation import check_counts
from ._utils import check_copy_inplace, select_matrix, set_matrix

UNS_KEY = "pearson_residuals_normalization"


def _check_pearson_counts(matrix) -> None:
    scan = check_counts(matrix, "the data", require_integer=False)
    if scan is not None and scan.n_non_integer:
        warnings.warn(
            "pearson_residuals expects raw counts, but non-integer values were found.",
            UserWarning,
            stacklevel=4,
        )


def pearson_residuals(
    adata: AnnData,
    *,
    theta: float = 100,
    clip: float | None = None,
    layer: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    inplace: bool = True,
    copy: bool = False,
):
    """Analytic Pearson residual normalization, as :func:`scanpy.experimental.pp.normalize_pearson_residuals`.

    With ``mu_cg = n_c n_g / n`` (cell total × gene total / grand total) the residual is
    ``(x_cg - mu_cg) / sqrt(mu_cg + mu_cg² / theta)``, clipped to ``[-clip, clip]``.
    Totals are accumulated in float64 and the residuals are computed by a numba kernel that
    fills the output ``chunk_size`` rows at a time, without temporaries.

    The result is **dense by nature** (almost no residual is zero): sparse input gives a
    dense ``n_cells × n_genes`` array, so select genes first on large data. Float32 input
    gives float32, anything else float64 (scanpy 1.11 does the same with an explicit ``clip``
    but returns float64 for float32 input with ``clip=None``). Genes or cells without any count get
    residual 0 (scanpy gives NaN there).

    Parameters
    ----------
    adata
        Annotated data matrix with raw counts in ``X`` or ``layer``. Negative, NaN or
        infinite values raise a ValueError; non-integer values warn, as in scanpy.
    theta
        Negative binomial overdispersion shared by all genes (> 0).
    clip
        Clip residuals to ``[-clip, clip]``; ``None`` uses ``sqrt(n_cells)`` as scanpy.
    layer
        Layer to use instead of ``X``; the result replaces it.
    chunk_size
        Rows processed per kernel call.
    inplace
        Replace ``X`` / ``layer`` with the residuals; ``False`` returns them instead.
    copy
        Work on and return a copy of ``adata``. Not compatible with ``inplace=False``.

    Returns
    -------
    The dense residuals if ``inplace=False``, the copy if ``copy=True``, else ``None``. Sets
    ``uns['pearson_residuals_normalization']`` with scanpy's keys ``theta``, ``clip`` (as
    passed) and ``computed_on``, plus ``params`` (with the clip actually used).
    """
    check_copy_inplace(copy, inplace)
    if theta <= 0:
        raise ValueError(f"Pearson residuals need theta > 0, got {theta}.")
    if clip is not None and clip < 0:
        raise ValueError(f"clip must be >= 0 or None, got {clip}.")
    adata, matrix = select_matrix(adata, layer, copy=copy, modify=inplace, check=_check_pearson_counts)
    residuals = pearson_residuals_matrix(
        matrix, theta=theta, clip=clip, chunk_size=chunk_size, copy=not inplace
    )
    if not inplace:
        return residuals
    set_matrix(adata, residuals, layer)
    used_clip = float(np.sqrt(adata.n_obs)) if clip is None else float(clip)
    adata.uns[UNS_KEY] = {
        "theta": theta,
        "clip": clip,
        "computed_on": layer if layer else "adata.X",
        "params": {"theta": theta, "clip": used_clip, "layer": layer, "chunk_size": chunk_size},
    }
    return adata if copy else None
