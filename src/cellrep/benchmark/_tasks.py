"""Benchmark tasks: how a labelled dataset (and an optional query) is cut into train / test pairs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import check_labels

TASKS = ("within", "leave_one_batch_out", "cross_dataset", "cross_species", "novel_type")
DEFAULT_TASKS = ("within", "leave_one_batch_out", "cross_dataset", "cross_species")
TEST_SIZE = 0.2
#: novel_type: a type is held out of the reference only with at least this many cells in the test part
NOVEL_MIN_TEST_CELLS = 10


@dataclass
class Split:
    """One train / test pair. ``test`` carries no label column: methods cannot peek at it."""

    task: str
    dataset: str
    split: str
    train: object
    test: object
    truth: np.ndarray
    #: novel_type: test cells whose type is absent from the training cells
    novel: np.ndarray | None = None


def _pair(task: str, dataset: str, split: str, train, test, labels_key: str) -> Split:
    truth = test.obs[labels_key].astype(str).to_numpy()
    test = test.copy()
    del test.obs[labels_key]
    return Split(task, dataset, split, train, test, truth)


def within_splits(adata, labels_key: str, dataset: str, seeds: Sequence[int]) -> Iterator[Split]:
    """Repeated stratified 80/20 splits, one per seed."""
    from sklearn.model_selection import train_test_split

    adata = adata[check_labels(adata, labels_key)]
    labels = adata.obs[labels_key].astype(str).to_numpy()
    for seed in seeds:
        train, test = train_test_split(
            np.arange(adata.n_obs), test_size=TEST_SIZE, stratify=labels, random_state=seed
        )
        yield _pair("within", dataset, f"seed{seed}", adata[train].copy(), adata[test].copy(), labels_key)


def leave_one_batch_out_splits(
    adata, labels_key: str, dataset: str, batch_key: str | None
) -> Iterator[Split]:
    """Train on all batches but one, test on that one (labels restricted to those seen in training)."""
    if batch_key is None or batch_key not in adata.obs or adata.obs[batch_key].nunique() < 2:
        return
    adata = adata[check_labels(adata, labels_key)]
    batches = adata.obs[batch_key].astype(str).to_numpy()
    labels = adata.obs[labels_key].astype(str).to_numpy()
    for batch in pd.unique(batches):
        held_out = batches == batch
        seen = np.isin(labels, np.unique(labels[~held_out]))
        train, test = adata[~held_out], adata[held_out & seen]
        if test.n_obs == 0:
            continue
        yield _pair("leave_one_batch_out", dataset, batch, train.copy(), test.copy(), labels_key)


def cross_genes(ref_genes, query_genes) -> np.ndarray:
    """The genes a cross task uses, in reference order, under ``transfer_labels``' one overlap rule.

    No shared gene at all points to ``--orthologs``; fewer than 20 raise and fewer than 200 (or
    half of the smaller panel) warn, as in :func:`cellrep.tl.transfer_labels`.
    """
    from ..tl._gene_overlap import shared_genes

    if not pd.Index(ref_genes).isin(pd.Index(query_genes)).any():
        raise ValueError(
            "Reference and query share no genes; map one of them with `--orthologs` / `cr.tl.map_orthologs`."
        )
    return shared_genes(ref_genes, query_genes)


def shared_cells_and_genes(ref, query, labels_key: str):
    """``ref`` and ``query`` restricted to their shared labels and shared genes (in reference order)."""
    ref = ref[check_labels(ref, labels_key)]
    ref_labels = ref.obs[labels_key].astype(str)
    query = query[query.obs[labels_key].notna().to_numpy()]
    query_labels = query.obs[labels_key].astype(str)
    shared_labels = np.intersect1d(ref_labels.unique(), query_labels.unique())
    if shared_labels.size < 2:
        raise ValueError(
            f"Reference and query share fewer than two {labels_key!r} labels; nothing to transfer."
        )
    genes = cross_genes(ref.var_names, query.var_names)
    ref = ref[ref_labels.isin(shared_labels).to_numpy(), genes].copy()
    query = query[query_labels.isin(shared_labels).to_numpy(), genes].copy()
    return ref, query


def cross_splits(
    adata, query, labels_key: str, dataset: str, query_name: str, orthologs: str | None
) -> Iterator[Split]:
    """Train on all of ``adata``, test on ``query`` (its genes renamed through ``orthologs`` first if given)."""
    from ..tl import map_orthologs

    if orthologs is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            adata = map_orthologs(adata, orthologs)
    ref, target = shared_cells_and_genes(adata, query, labels_key)
    task = "cross_species" if orthologs is not None else "cross_dataset"
    yield _pair(task, f"{dataset}->{query_name}", "all", ref, target, labels_key)


def _novel_type_parts(adata, labels_key: str, seed: int):
    """The stratified 80/20 split of ``novel_type_splits``, the types it can hold out, and why not."""
    from sklearn.model_selection import train_test_split

    adata = adata[check_labels(adata, labels_key)]
    labels = adata.obs[labels_key].astype(str).to_numpy()
    train, test = train_test_split(
        np.arange(adata.n_obs), test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    types, test_counts = np.unique(labels[test], return_counts=True)
    held_out = types[test_counts >= NOVEL_MIN_TEST_CELLS] if types.size >= 3 else types[:0]
    reason = ""
    if held_out.size == 0:
        reason = (
            f"novel_type needs at least 3 types and one with {NOVEL_MIN_TEST_CELLS} or more cells in the "
            f"{TEST_SIZE:.0%} test part; these data have {types.size} types with at most "
            f"{test_counts.max()} test cells ({len(labels)} cells in all)"
        )
    return adata, labels, train, test, held_out, reason


def novel_type_splits(adata, labels_key: str, dataset: str, seed: int = 0) -> Iterator[Split]:
    """One stratified 80/20 split; each type with enough test cells is removed in turn from the training part.

    The test part keeps every cell, so the held-out type is novel to the reference. Types are
    held out only if at least two others remain and the test part holds at least
    ``NOVEL_MIN_TEST_CELLS`` of its cells.
    """
    adata, labels, train, test, held_out, _reason = _novel_type_parts(adata, labels_key, seed)
    for cell_type in held_out:
        kept = train[labels[train] != cell_type]
        split = _pair(
            "novel_type", dataset, f"novel:{cell_type}", adata[kept].copy(), adata[test].copy(), labels_key
        )
        split.novel = split.truth == cell_type
        yield split


def unavailable_tasks(
    adata, labels_key: str, tasks: Sequence[str], *, query=None, orthologs=None, batch_key="batch", seed=0
) -> dict[str, str]:
    """Why each of ``tasks`` gives no split with these inputs (tasks that do are left out)."""
    reasons = {}
    for task in tasks:
        if task == "leave_one_batch_out" and (
            batch_key is None or batch_key not in adata.obs or adata.obs[batch_key].nunique() < 2
        ):
            reasons[task] = f"leave_one_batch_out needs at least 2 batches in obs[{batch_key!r}]"
        elif task == "novel_type":
            reason = _novel_type_parts(adata, labels_key, seed)[-1]
            if reason:
                reasons[task] = reason
        elif task in ("cross_dataset", "cross_species") and query is None:
            reasons[task] = f"{task} needs a query"
        elif task == "cross_species" and orthologs is None:
            reasons[task] = "cross_species needs orthologs"
        elif task == "cross_dataset" and orthologs is not None:
            reasons[task] = "with orthologs the cross task is cross_species"
    return reasons


def make_splits(
    adata,
    labels_key: str,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    dataset: str = "data",
    query=None,
    query_name: str = "query",
    orthologs: str | None = None,
    batch_key: str | None = "batch",
    seeds: Sequence[int] = (0, 1, 2),
) -> list[Split]:
    """Every train / test pair of the requested tasks that the inputs allow.

    ``within`` and ``leave_one_batch_out`` use ``adata`` alone (the latter needs two batches
    in ``obs[batch_key]``); ``cross_dataset`` needs ``query``; ``cross_species`` needs
    ``query`` and ``orthologs``, the ``adata.var`` column naming each gene's query-species
    ortholog; ``novel_type`` holds each type out of the reference in turn (see
    :func:`novel_type_splits`). Tasks that the inputs do not allow are skipped.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"Unknown tasks {unknown}; choose from {TASKS}.")
    splits: list[Split] = []
    if "within" in tasks:
        splits.extend(within_splits(adata, labels_key, dataset, seeds))
    if "leave_one_batch_out" in tasks:
        splits.extend(leave_one_batch_out_splits(adata, labels_key, dataset, batch_key))
    if "novel_type" in tasks:
        splits.extend(novel_type_splits(adata, labels_key, dataset, seeds[0] if len(seeds) else 0))
    cross_task = "cross_species" if orthologs is not None else "cross_dataset"
    if query is not None and cross_task in tasks:
        splits.extend(cross_splits(adata, query, labels_key, dataset, query_name, orthologs))
    return splits
