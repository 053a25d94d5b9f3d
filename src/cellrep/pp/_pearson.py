"""Analytic Pearson residuals of AnnData counts (Lause et al. 2021): implicit for sparse counts, dense on request."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import partial

import numpy as np
from anndata import AnnData

from .._array._dispatch import is_sparse_matrix
from .._array._moments import row_sums
from .._array._pearson import (
    DEFAULT_CHUNK_SIZE,
    PearsonResidualMatrix,
    check_theta_clip,
    implicit_pearson_residuals,
    pearson_residual_matrix,
    pearson_residuals_matrix,
)
from .._validation import check_counts, check_matrix_type, get_matrix, raw_counts_hint, store_params
from ._utils import check_copy_inplace, select_matrix, set_matrix

UNS_KEY = "pearson_residuals_normalization"
METHOD = "pearson_residuals"
TOTALS_RTOL = 1e-6


def _check_pearson_counts(matrix, adata: AnnData | None = None) -> None:
    scan = check_counts(matrix, "the data", require_integer=False, adata=adata)
    if scan is not None and scan.n_non_integer:
        warnings.warn(
            "pearson_residuals expects raw counts, but non-integer values were found."
            + (raw_counts_hint(adata) if adata is not None else ""),
            UserWarning,
            stacklevel=4,
        )


def _total_keys(key: str) -> tuple[str, str]:
    return f"{key}_cell_total", f"{key}_gene_total"


def pearson_residuals(
    adata: AnnData,
    *,
    theta: float = 100,
    clip: float | None = None,
    layer: str | None = None,
    key_added: str = "pearson_residuals",
    dense: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    inplace: bool = True,
    copy: bool = False,
) -> PearsonResidualMatrix | np.ndarray | AnnData | None:
    """Analytic Pearson residual normalization, as :func:`scanpy.experimental.pp.normalize_pearson_residuals`.

    With ``mu_cg = n_c n_g / n`` (cell total × gene total / grand total) the residual is
    ``(x_cg - mu_cg) / sqrt(mu_cg + mu_cg² / theta)``, clipped to ``[-clip, clip]``.
    Totals are accumulated in float64 and residuals are computed by numba kernels. Float32
    counts give float32 residuals, anything else float64 (scanpy 1.11 does the same with an
    explicit ``clip`` but returns float64 for float32 input with ``clip=None``). Genes or
    cells without any count get residual 0 (scanpy gives NaN there).
    Float16 and bool data are read as float32, and sparse input with duplicate entries or
    unsorted indices as its canonical form (a copy; the stored matrix is not modified).


    Almost no residual is zero, so the dense result of sparse counts is ``n_cells × n_genes``.
    Sparse counts are therefore not densified by default: the residuals stay **implicit**, a
    :class:`~cellrep._array._pearson.PearsonResidualMatrix` that holds the counts and their
    totals and computes residuals block by block for products, moments and gene subsets.
    ``cr.tl.pca(adata, layer=key_added)`` runs PCA on it without densifying, and
    ``cr.pp.get_pearson_residuals(adata)[:, genes].toarray()`` densifies selected genes only.

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
        Layer with the counts, instead of ``X``.
    key_added
        Name of the implicit result: ``obs[f'{key_added}_cell_total']``,
        ``var[f'{key_added}_gene_total']`` and ``uns[key_added]['params']``.
    dense
        ``True`` computes the dense residuals (``X`` / ``layer`` is replaced by them),
        ``False`` keeps them implicit; ``None`` (default) is dense for dense counts and
        implicit for sparse counts.
    chunk_size
        Rows filled per kernel call for the dense result.
    inplace
        Write to ``adata``; ``False`` returns the residuals and leaves ``adata`` untouched.
    copy
        Work on and return a copy of ``adata``. Not compatible with ``inplace=False``.

    Returns
    -------
    With ``inplace=False``: the dense residuals (ndarray) or the implicit
    :class:`~cellrep._array._pearson.PearsonResidualMatrix` (``np.asarray(result)`` gives the
    dense values). Otherwise the copy if ``copy=True``, else ``None``, and

    - dense: ``X`` / ``layer`` holds the residuals and ``uns['pearson_residuals_normalization']``
      scanpy's keys ``theta``, ``clip`` (as passed) and ``computed_on``, plus ``params`` (with the
      clip actually used);
    - implicit: ``X`` / ``layer`` keeps the counts; ``obs[f'{key_added}_cell_total']`` and
      ``var[f'{key_added}_gene_total']`` hold the float64 totals and ``uns[key_added]['params']``
      ``theta``, the ``clip`` used, the source ``layer``, the grand ``total`` and
      ``implicit=True``. Read it back with :func:`get_pearson_residuals`; subsetting cells keeps
      it valid, changing or subsetting the counts' genes does not.
    """
    check_copy_inplace(copy, inplace)
    check_theta_clip(theta, clip)
    if dense not in (None, True, False):
        raise TypeError(f"dense must be True, False or None, got {dense!r}.")
    check = partial(_check_pearson_counts, adata=adata if layer is None else None)
    adata, matrix = select_matrix(adata, layer, copy=copy, modify=inplace, check=check)
    if dense is None:
        dense = not is_sparse_matrix(matrix)
    if not dense:
        residuals = implicit_pearson_residuals(matrix, theta=theta, clip=clip)
        if not inplace:
            return residuals
        cell_key, gene_key = _total_keys(key_added)
        adata.obs[cell_key] = residuals.cell_totals
        adata.var[gene_key] = residuals.gene_totals
        params = {
            "method": METHOD,
            "implicit": True,
            "theta": theta,
            "clip": residuals.clip,
            "layer": layer,
            "total": residuals.total,
        }
        store_params(adata, key_added, params)
        return adata if copy else None
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


def has_pearson_residuals(adata: AnnData, key: str) -> bool:
    """Whether ``uns[key]`` records an implicit :func:`pearson_residuals` result."""
    record = adata.uns.get(key)
    params = record.get("params") if isinstance(record, Mapping) else None
    return isinstance(params, Mapping) and params.get("method") == METHOD and bool(params.get("implicit"))


def get_pearson_residuals(adata: AnnData, key: str = "pearson_residuals") -> PearsonResidualMatrix:
    """The implicit residuals recorded by :func:`pearson_residuals` on ``adata``.

    Parameters
    ----------
    adata
        AnnData on which :func:`pearson_residuals` ran with sparse counts (or ``dense=False``).
    key
        Its ``key_added``.

    Returns
    -------
    A :class:`~cellrep._array._pearson.PearsonResidualMatrix` over the counts in ``X`` /
    the recorded layer (shared, not copied) with the recorded totals, ``theta`` and ``clip``.
    One pass over the counts checks that their cell totals are still those recorded.
    """
    if not has_pearson_residuals(adata, key):
        raise ValueError(
            f"adata.uns[{key!r}] does not record implicit Pearson residuals. "
            f"Run `cr.pp.pearson_residuals(adata, key_added={key!r})` on the sparse counts first."
        )
    params = adata.uns[key]["params"]
    cell_key, gene_key = _total_keys(key)
    present = {
        f"adata.obs[{cell_key!r}]": cell_key in adata.obs,
        f"adata.var[{gene_key!r}]": gene_key in adata.var,
    }
    missing = [name for name, found in present.items() if not found]
    if missing:
        raise ValueError(
            f"{' and '.join(missing)} not found, so the Pearson residuals {key!r} are incomplete. "
            f"Rerun `cr.pp.pearson_residuals(adata, key_added={key!r})`."
        )
    layer = params["layer"]
    counts = get_matrix(adata, layer)
    check_matrix_type(counts)
    cell_totals = adata.obs[cell_key].to_numpy(np.float64)
    if not np.allclose(row_sums(counts), cell_totals, rtol=TOTALS_RTOL, atol=TOTALS_RTOL):
        where = "adata.X" if layer is None else f"layer {layer!r}"
        raise ValueError(
            f"The counts in {where} changed since the Pearson residuals {key!r} were computed: their cell "
            f"totals differ from adata.obs[{cell_key!r}] (genes removed or values modified). Rerun "
            f"`cr.pp.pearson_residuals(adata, key_added={key!r})` on the raw counts; to keep only some "
            "genes of the residuals, subset the result: `cr.pp.get_pearson_residuals(adata)[:, genes]`."
        )
    return pearson_residual_matrix(
        counts,
        cell_totals,
        adata.var[gene_key].to_numpy(np.float64),
        params["total"],
        params["theta"],
        params["clip"],
    )
