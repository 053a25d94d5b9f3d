"""``cr.tl.sctop_basis`` and ``cr.tl.sctop_score``: scTOP cell-type projection scores.

scTOP (Yampolskaya et al., 2023) describes every cell type of a reference by one averaged,
rank → probit transformed expression profile and scores a cell by the least-squares
coordinates of its own transformed profile on those columns. This module reproduces the
``sctop`` package (``process`` and ``score``) without densifying the query.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .._array._rank_probit import rank_probit_matrix
from .._array._sctop import basis_profiles, project_onto_basis, projection_weights
from .._validation import (
    check_counts,
    check_gene_overlap,
    check_labels,
    count_non_integer,
    get_matrix,
    raw_counts_hint,
    store_params,
)

DEFAULT_MIN_CELLS = 2


def _what(layer: str | None) -> str:
    return "the data" if layer is None else f"layer {layer!r}"


def _check_unique(genes: pd.Index, owner: str) -> None:
    if not genes.is_unique:
        duplicated = list(genes[genes.duplicated()].unique()[:5])
        raise ValueError(
            f"{owner} has duplicated gene names (e.g. {duplicated}); make them unique with `.var_names_make_unique()`."
        )


def _type_order(labels: pd.Series, usable: np.ndarray) -> list[str]:
    """The types in their categorical order (sorted for other columns), keeping only usable cells."""
    present = set(labels[usable].astype(str))
    ordered = (
        labels.cat.categories.astype(str)
        if isinstance(labels.dtype, pd.CategoricalDtype)
        else sorted(present)
    )
    return [name for name in ordered if name in present]


def _varm_key(key_added: str) -> str:
    """``varm`` key of the basis stored by :func:`sctop_basis` with ``key_added``."""
    return f"{key_added}_basis"


def _label_key(key_added: str) -> str:
    """``obs`` key of the top-scoring type written by :func:`sctop_score`: ``'X_sctop'`` → ``'sctop_label'``."""
    return f"{key_added.removeprefix('X_')}_label"


def sctop_basis(
    ref: AnnData,
    *,
    labels_key: str,
    min_cells: int = DEFAULT_MIN_CELLS,
    layer: str | None = None,
    match_sctop: bool = True,
    key_added: str = "sctop",
    inplace: bool = True,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """The scTOP basis: one averaged, rank → probit transformed profile per reference cell type.

    For each type the library fractions ``x / Σx`` of its cells are averaged, and the mean
    profile goes through ``log2(1 + x)``, average-tie ranks over all genes, ``Φ⁻¹(rank / (G + 1))``
    and unit L2 norm: ``sctop.process(type_counts, average=True)``.

    Parameters
    ----------
    ref
        Labelled reference, cells × genes, non-negative values (raw counts).
    labels_key
        ``ref.obs`` column with the cell types. Cells with a missing label are ignored, with a warning.
    min_cells
        Types with fewer cells are left out of the basis, with a warning.
    layer
        Layer to read instead of ``ref.X``.
    match_sctop
        Rank the averaged profile after ``log2(1 + x)`` in float32, as the ``sctop`` package
        does, so the basis (and the scores) match it to float precision. The float32 rounding
        ties genes with nearly equal means, and genes with a mean fraction below about ``6e-8``
        with the unexpressed genes. ``False`` ranks the exact float64 means (scores then differ
        from ``sctop`` by about ``1e-4``).
    key_added
        Where to store the basis: ``ref.varm[f'{key_added}_basis']`` (genes × types) and
        ``ref.uns[key_added]`` with ``'cell_types'`` (column names), ``'n_cells'`` (cells per
        type) and ``'params'``. :func:`sctop_score` reads it back with ``basis_key=key_added``.
    inplace
        Write the basis to ``ref``. It is returned either way.
    n_threads
        Thread limit for the numba kernel (default ``cellrep.settings.n_threads``).

    Returns
    -------
    The basis as a genes × types DataFrame (index ``ref.var_names``), ready for :func:`sctop_score`.
    """
    if int(min_cells) < 1:
        raise ValueError(f"min_cells must be at least 1, got {min_cells}.")
    _check_unique(ref.var_names, "ref")
    matrix = get_matrix(ref, layer)
    _warn_if_not_counts(ref, matrix, layer)
    usable = check_labels(ref, labels_key, min_cells_per_class=int(min_cells))
    labels = ref.obs[labels_key]
    cell_types = _type_order(labels, usable)
    codes = pd.Categorical(labels.astype(str), categories=cell_types).codes.astype(np.int64)
    codes[~usable] = -1
    basis = pd.DataFrame(
        basis_profiles(matrix, codes, cell_types, match_sctop=match_sctop, n_threads=n_threads),
        index=ref.var_names.copy(),
        columns=pd.Index(cell_types),
    )
    if inplace:
        ref.varm[_varm_key(key_added)] = basis.to_numpy()
        params = {
            "labels_key": labels_key,
            "min_cells": int(min_cells),
            "layer": layer,
            "match_sctop": match_sctop,
        }
        n_cells = np.bincount(codes[codes >= 0], minlength=len(cell_types))
        store_params(ref, key_added, params, cell_types=np.array(cell_types, dtype=object), n_cells=n_cells)
    return basis


def _warn_if_not_counts(ref: AnnData, matrix, layer: str | None) -> None:
    """Raise on negative or non-finite values; warn when the values are not counts (for example log data).

    The basis averages library fractions, which any per-cell scaling of the counts (CPM) keeps
    but a log transform does not.
    """
    scan = check_counts(matrix, _what(layer), require_integer=False, adata=ref if layer is None else None)
    logged = "log1p" in ref.uns and layer is None
    if logged or (scan.n_non_integer and count_non_integer(matrix)):
        reason = "uns['log1p'] is set" if logged else "it holds non-integer values"
        warnings.warn(
            f"sctop_basis expects raw counts (it averages library fractions), but {_what(layer)} looks "
            f"log-transformed or normalized ({reason}). A basis from log data differs from scTOP's; pass "
            "layer= naming the raw counts." + (raw_counts_hint(ref) if layer is None else ""),
            UserWarning,
            stacklevel=3,
        )


def _basis_frame(basis: AnnData | pd.DataFrame, stored_key: str) -> pd.DataFrame:
    """The basis as a validated genes × types float64 DataFrame."""
    if isinstance(basis, AnnData):
        varm_key = _varm_key(stored_key)
        stored = basis.uns.get(stored_key)
        if varm_key not in basis.varm or not isinstance(stored, dict) or "cell_types" not in stored:
            raise ValueError(
                f"The reference holds no scTOP basis under {stored_key!r} (varm[{varm_key!r}] and uns[{stored_key!r}]). "
                f"Run `cr.tl.sctop_basis(ref, labels_key=..., key_added={stored_key!r})` first, or pass basis_key."
            )
        frame = pd.DataFrame(
            np.asarray(basis.varm[varm_key], dtype=np.float64),
            index=basis.var_names,
            columns=pd.Index([str(name) for name in stored["cell_types"]]),
        )
    elif isinstance(basis, pd.DataFrame):
        try:
            frame = basis.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError("The basis DataFrame must hold numbers (genes × types).") from error
        frame.index = frame.index.astype(str)
    else:
        raise TypeError(
            f"basis must be the reference AnnData or a genes × types DataFrame, got {type(basis).__name__}."
        )
    if frame.shape[1] == 0:
        raise ValueError("The basis has no cell types.")
    if not np.isfinite(frame.to_numpy()).all():
        raise ValueError("The basis contains NaN or infinite values; rebuild it with `cr.tl.sctop_basis`.")
    _check_unique(frame.index, "The basis")
    return frame


def sctop_score(
    query: AnnData,
    basis: AnnData | pd.DataFrame,
    *,
    layer: str | None = None,
    basis_key: str = "sctop",
    key_added: str = "X_sctop",
    inplace: bool = True,
    overlap_warning: float = 0.5,
    n_threads: int | None = None,
) -> pd.DataFrame | None:
    """scTOP scores: the coordinates of every query cell on the columns of a scTOP basis.

    Each cell is rank → probit transformed over all its genes (:func:`cellrep.pp.rank_probit`,
    as ``sctop.process``), and its scores on the genes it shares with the basis ``B`` are the
    least-squares coefficients ``a = (BᵀB)⁻¹Bᵀs`` (``sctop.score``). The transformed query stays
    sparse (deltas plus one offset per cell), so this costs O(nnz) beyond the ranking. Genes are
    matched by name: the query may order them differently or hold other genes.

    Parameters
    ----------
    query
        Cells × genes, non-negative values (raw counts).
    basis
        The reference AnnData on which :func:`sctop_basis` ran, or a genes × types DataFrame
        (as returned by :func:`sctop_basis`).
    layer
        Layer of ``query`` to read instead of ``query.X``.
    basis_key
        The ``key_added`` of :func:`sctop_basis`, when ``basis`` is an AnnData.
    key_added
        Where to write: ``query.obsm[key_added]`` (cells × types scores),
        ``query.obs[f'{key_added.removeprefix("X_")}_label']`` (the top-scoring type, categorical;
        ``'sctop_label'`` by default) and ``query.uns[key_added]`` with ``'cell_types'`` (the
        columns), ``'n_shared_genes'`` and ``'params'``.
    inplace
        Write to ``query``; otherwise return the scores.
    overlap_warning
        Warn when the query holds fewer than this fraction of the basis genes.
    n_threads
        Thread limit for the numba kernel (default ``cellrep.settings.n_threads``).

    Returns
    -------
    ``None`` when ``inplace``; otherwise the scores as a cells × types DataFrame.
    Cells without counts get zero scores and no label, with a warning.
    """
    basis_frame = _basis_frame(basis, basis_key)
    _check_unique(query.var_names, "query")
    matrix = get_matrix(query, layer)
    check_counts(matrix, _what(layer), require_integer=False)
    shared = check_gene_overlap(basis_frame.index, query.var_names.astype(str))
    if len(shared) < overlap_warning * basis_frame.shape[0]:
        warnings.warn(
            f"Only {len(shared)} of the {basis_frame.shape[0]} basis genes are in the query; scores on few genes are "
            "less reliable. Check the gene identifiers, or map species with `cr.tl.map_orthologs`.",
            UserWarning,
            stacklevel=2,
        )
    cell_types = basis_frame.columns.astype(str)
    weights = np.zeros((query.n_vars, len(cell_types)))
    weights[query.var_names.astype(str).get_indexer(shared)] = projection_weights(
        basis_frame.loc[shared].to_numpy(), cell_types
    )
    # as sctop: rank over all the query genes, then score on the shared ones
    values = rank_probit_matrix(matrix, l2_normalize=True, n_threads=n_threads)
    scores = project_onto_basis(values, weights)
    if not inplace:
        return pd.DataFrame(scores, index=query.obs_names.copy(), columns=cell_types)
    has_counts = values.row_offsets != 0
    top_types = np.where(has_counts, np.asarray(cell_types, dtype=object)[scores.argmax(axis=1)], None)
    query.obsm[key_added] = scores
    query.obs[_label_key(key_added)] = pd.Categorical(top_types, categories=list(cell_types))
    params = {"layer": layer, "basis_key": basis_key if isinstance(basis, AnnData) else None}
    store_params(
        query, key_added, params, cell_types=np.array(cell_types, dtype=object), n_shared_genes=len(shared)
    )
    return None
