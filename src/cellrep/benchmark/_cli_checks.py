"""Checks of the ``cellrep benchmark`` inputs, all run before the first fit.

Each failed check raises :class:`~cellrep.benchmark._cli.InputError` with a one-line message
that names the option to change.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._cli import DEFAULT_LABELS, EMBEDDED_LABELS, InputError

MIN_CLASSES = 2
MIN_CELLS_PER_CLASS = 2
WARM_UP_CELLS_PER_CLASS = 12
CROSS_TASKS = ("cross_dataset", "cross_species")


@dataclass
class Inputs:
    data: object
    labels_key: str
    name: str
    query: object | None
    query_name: str | None


def check_output_folder(out: Path, *, overwrite: bool) -> None:
    """Refuse an existing non-empty output folder unless ``--overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} already holds files; choose another --out or pass --overwrite")


def read_anndata(path: Path, option: str):
    """``anndata.read_h5ad(path)`` with a one-line error for a missing or unreadable file."""
    import anndata as ad

    if not path.exists():
        raise InputError(f"{option} {path}: no such file")
    if not path.is_file():
        raise InputError(f"{option} {path} is not a file")
    try:
        return ad.read_h5ad(path)
    except Exception as error:  # h5py and anndata raise many kinds for a file that is not AnnData
        raise InputError(
            f"{option} {path} is not a readable AnnData .h5ad file ({type(error).__name__}: {error})"
        ) from error


def check_labels_column(adata, labels_key: str, option: str) -> None:
    """The label column exists and has at least two classes with two or more cells each."""
    if labels_key not in adata.obs.columns:
        columns = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise InputError(f"{option} has no obs column {labels_key!r} (pass --labels; obs columns: {columns})")
    counts = adata.obs[labels_key].dropna().astype(str).value_counts()
    usable = counts[counts >= MIN_CELLS_PER_CLASS]
    if len(usable) < MIN_CLASSES:
        raise InputError(
            f"{option} obs[{labels_key!r}] has {len(usable)} class(es) with at least {MIN_CELLS_PER_CLASS} cells; "
            f"the benchmark needs at least {MIN_CLASSES} (class sizes: {', '.join(f'{name}: {size}' for name, size in counts.head(5).items())})"
        )


def use_counts_layer(adata, layer: str | None, option: str, *, required: bool = True) -> None:
    """Put the raw counts (X or ``layer``) in X, and check that they are raw counts (lazily read: the first chunk)."""
    from .._validation import check_counts, check_matrix_type, get_matrix
    from ._lazy import first_chunk

    if layer is not None:
        if layer in adata.layers:
            adata.X = adata.layers[layer]
        elif required:
            available = ", ".join(adata.layers.keys()) or "none"
            raise InputError(f"{option} has no layer {layer!r} (layers: {available}); fix --layer")
    where = "X" if layer is None or layer not in adata.layers else f"layer {layer!r}"
    try:
        check_matrix_type(get_matrix(adata))
    except TypeError as error:
        raise InputError(f"{option} {where}: {error}") from error
    try:
        check_counts(first_chunk(get_matrix(adata)), f"{option} {where}")
    except (ValueError, TypeError) as error:
        available = ", ".join(adata.layers.keys()) or "none"
        first_sentence = str(error).split(". ")[0]
        raise InputError(
            f"{first_sentence}; the benchmark needs raw counts: pass --layer naming a layer of raw counts "
            f"(layers: {available})"
        ) from error


def check_ortholog_column(adata, column: str, option: str) -> None:
    """The ``--orthologs`` column is a ``var`` column of ``adata`` (read from ``option``)."""
    if column not in adata.var.columns:
        columns = ", ".join(map(str, adata.var.columns[:20])) or "none"
        raise InputError(f"--orthologs {column!r} is not a var column of {option} (var columns: {columns})")


def check_tasks(args, data, query) -> None:
    """``--query``, ``--orthologs`` and ``--tasks`` agree, and the named columns exist."""
    requested = set(args.tasks) if args.tasks_given else set()
    if args.orthologs is not None:
        if query is None:
            raise InputError("--orthologs needs --query (the dataset in the ortholog species)")
        check_ortholog_column(data, args.orthologs, "--data")
        if "cross_dataset" in requested:
            raise InputError(
                "with --orthologs the cross task is cross_species; drop cross_dataset from --tasks"
            )
    elif "cross_species" in requested:
        raise InputError(
            "--tasks cross_species needs --orthologs (the var column of --data naming each gene's ortholog)"
        )
    if query is None and requested & set(CROSS_TASKS):
        raise InputError(f"--tasks {' '.join(sorted(requested & set(CROSS_TASKS)))} needs --query")
    if query is not None and args.tasks_given and not requested & set(CROSS_TASKS):
        raise InputError(
            "--query is only used by the cross tasks; add cross_dataset or cross_species to --tasks"
        )
    if "novel_type" in requested:
        from ._tasks import unavailable_tasks

        reason = unavailable_tasks(data, args.labels_key_resolved, ["novel_type"], seed=args.seeds[0]).get(
            "novel_type"
        )
        if reason:
            raise InputError(f"--tasks {reason}: pass a larger --data or drop novel_type")
    if "leave_one_batch_out" in requested:
        if args.batch_key not in data.obs.columns:
            raise InputError(
                f"--tasks leave_one_batch_out needs obs column --batch-key {args.batch_key!r} in --data"
            )
        if data.obs[args.batch_key].nunique() < 2:
            raise InputError(
                f"--tasks leave_one_batch_out needs at least 2 batches in obs[{args.batch_key!r}]"
            )
    if query is not None:
        check_shared_genes(data, query, args.orthologs)
        shared = np.intersect1d(
            data.obs[args.labels_key_resolved].dropna().astype(str).unique(),
            query.obs[args.labels_key_resolved].dropna().astype(str).unique(),
        )
        if shared.size < MIN_CLASSES:
            raise InputError(
                f"--data and --query share {shared.size} {args.labels_key_resolved!r} label(s); "
                f"the cross tasks need at least {MIN_CLASSES}"
            )


def check_shared_genes(data, query, orthologs: str | None) -> None:
    """The cross task's genes pass ``transfer_labels``' overlap rule (its warning comes when the split is made)."""
    from ..tl._orthologs import _ortholog_series
    from ._tasks import cross_genes

    genes = data.var_names
    if orthologs is not None:
        genes = pd.Index(pd.unique(_ortholog_series(data, orthologs, None, None).dropna()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            cross_genes(genes, query.var_names)
        except ValueError as error:
            named = " (after --orthologs)" if orthologs is not None else ""
            raise InputError(f"--data{named} and --query: {error}") from error


def load_inputs(args) -> Inputs:
    """Read and check every input; raise InputError on the first problem."""
    from ._lazy import read_lazy_input

    lazy = getattr(args, "lazy", False)

    def read(path, option, first_row=0):
        if lazy:
            return read_lazy_input(path, option, args.chunk_size, first_row=first_row)
        return read_anndata(path, option)

    if args.data is None:
        if lazy:
            raise InputError("--lazy reads --data from disk; pass --data (an .h5ad file or .zarr store)")
        from ..datasets import pbmc68k_reduced_counts

        data, labels_key, name = pbmc68k_reduced_counts(), args.labels or EMBEDDED_LABELS, "pbmc68k_reduced"
    else:
        data, labels_key, name = read(args.data, "--data"), args.labels or DEFAULT_LABELS, args.data.stem
    args.labels_key_resolved = labels_key
    query = None if args.query is None else read(args.query, "--query", first_row=data.n_obs)
    check_labels_column(data, labels_key, "--data")
    use_counts_layer(data, args.layer, "--data")
    if query is not None:
        check_labels_column(query, labels_key, "--query")
        use_counts_layer(query, args.layer, "--query", required=False)
    check_tasks(args, data, query)
    return Inputs(data, labels_key, name, query, None if args.query is None else args.query.stem)


def small_subset(adata, labels_key: str):
    """Up to ``WARM_UP_CELLS_PER_CLASS`` cells of every class with enough cells, or None if too few."""
    labels = adata.obs[labels_key].astype(str).to_numpy()
    keep = np.zeros(adata.n_obs, dtype=bool)
    for label, count in pd.Series(labels).value_counts().items():
        if count >= 5:
            keep[np.flatnonzero(labels == label)[:WARM_UP_CELLS_PER_CLASS]] = True
    if pd.unique(labels[keep]).size < MIN_CLASSES:
        return None
    return adata[keep].copy()
