"""Run methods on task splits and collect a tidy table of accuracy, time and memory."""

from __future__ import annotations

import time
import tracemalloc
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._methods import Method, resolve_methods
from ._tasks import DEFAULT_TASKS, Split, make_splits, unavailable_tasks

COLUMNS = (
    "task",
    "dataset",
    "method",
    "split",
    "macro_f1",
    "accuracy",
    "fit_seconds",
    "predict_seconds",
    "peak_memory_mb",
    "n_train",
    "n_test",
    "error",
    "novel_auroc",
    "known_macro_f1",
    "novel_unknown_fraction",
    "known_unknown_fraction",
)
UNKNOWN = "unknown"


def _macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # macro F1 over the true classes of the test cells: a predicted class absent from the test
    # set costs precision of the others but adds no zero-F1 class of its own
    return f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0)


def novel_type_scores(
    truth: np.ndarray, predicted: np.ndarray, confidence, novel: np.ndarray, threshold: float | None
) -> dict:
    """Scores of the novel-type task.

    ``novel_auroc``: AUROC of ``-confidence`` for telling novel from known cells (NaN without a
    confidence); ``known_macro_f1``: macro-F1 of the top label on the known cells;
    ``novel_unknown_fraction`` / ``known_unknown_fraction``: the share of novel / known cells
    called unknown at the method's threshold (NaN when it makes no such call).
    """
    from sklearn.metrics import roc_auc_score

    scores = {"known_macro_f1": _macro_f1(truth[~novel], predicted[~novel])}
    has_confidence = confidence is not None and novel.any() and (~novel).any()
    scores["novel_auroc"] = roc_auc_score(novel, -np.asarray(confidence)) if has_confidence else np.nan
    if threshold is None or confidence is None:
        called = predicted == UNKNOWN if (predicted == UNKNOWN).any() else None
    else:
        called = np.asarray(confidence) < threshold
    scores["novel_unknown_fraction"] = called[novel].mean() if called is not None else np.nan
    scores["known_unknown_fraction"] = called[~novel].mean() if called is not None else np.nan
    return scores


def evaluate(method: Method, split: Split, labels_key: str, seed: int) -> dict:
    """Fit ``method`` on the split's training cells, predict its test cells, score and time both steps.

    Peak memory is the largest Python/numpy allocation seen by ``tracemalloc`` during fit and
    predict (torch tensors are not counted). A failing method gives a row with NaN scores and
    the error message, so one broken peer does not stop the benchmark.
    """
    row = {
        "task": split.task,
        "dataset": split.dataset,
        "method": method.name,
        "split": split.split,
        "n_train": split.train.n_obs,
        "n_test": split.test.n_obs,
        "error": "",
    }
    train, test = split.train.copy(), split.test.copy()
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model = method.fit(train, labels_key, seed)
            fitted = time.perf_counter()
            output = method.predict(model, test)
            done = time.perf_counter()
        predicted, confidence = output if isinstance(output, tuple) else (output, None)
        predicted = np.asarray(predicted).astype(str)
        peak = tracemalloc.get_traced_memory()[1]
    except Exception as error:
        tracemalloc.stop()
        return {
            **row,
            "macro_f1": np.nan,
            "accuracy": np.nan,
            "fit_seconds": np.nan,
            "predict_seconds": np.nan,
            "peak_memory_mb": np.nan,
            "error": f"{type(error).__name__}: {error}",
        }
    tracemalloc.stop()
    from sklearn.metrics import accuracy_score

    truth = split.truth
    if split.novel is not None:
        row.update(novel_type_scores(truth, predicted, confidence, split.novel, method.unknown_threshold))
    return {
        **row,
        "macro_f1": _macro_f1(truth, predicted) if split.novel is None else row["known_macro_f1"],
        "accuracy": accuracy_score(truth, predicted),
        "fit_seconds": fitted - start,
        "predict_seconds": done - fitted,
        "peak_memory_mb": peak / 2**20,
    }


def _seed_of(split: Split) -> int:
    return int(split.split[4:]) if split.split.startswith("seed") else 0


def run_benchmark(
    adata,
    labels_key: str = "cell_type",
    *,
    methods: Sequence[str | Method] | None = None,
    tasks: Sequence[str] = DEFAULT_TASKS,
    seeds: Sequence[int] = (0, 1, 2),
    dataset: str = "data",
    query=None,
    query_name: str = "query",
    orthologs: str | None = None,
    batch_key: str | None = "batch",
    progress: bool = True,
    blas_threads: int | None = 1,
) -> pd.DataFrame:
    """Benchmark label-transfer methods on ``adata`` (and a query) and return a tidy table.

    Parameters
    ----------
    adata
        Labelled AnnData with raw counts in ``X``.
    labels_key
        ``obs`` column with the cell types.
    methods
        Names from :data:`cellrep.benchmark.METHODS` or :class:`Method` objects (for
        example from :func:`cellrep_method`); ``None`` runs the default ones.
    tasks
        Any of ``'within'`` (stratified 80/20 splits, one per seed), ``'leave_one_batch_out'``
        (needs ``obs[batch_key]`` with two batches), ``'cross_dataset'`` (train on ``adata``,
        test on ``query``), ``'cross_species'`` (the same after renaming ``adata``'s genes
        through the ``var`` column ``orthologs``) and ``'novel_type'`` (each type removed from
        the reference in turn; adds ``novel_auroc``, ``known_macro_f1`` — also in ``macro_f1``
        — and the unknown fractions). Tasks the inputs do not allow are skipped.
    seeds
        Seeds of the within-dataset splits (also the methods' random state).
    dataset, query_name
        Names for the table.
    query
        A second labelled AnnData for the cross tasks; evaluated on the labels both share.
    orthologs
        ``adata.var`` column with each gene's ortholog in the query species.
    batch_key
        ``obs`` column with donors / batches for leave-one-batch-out.
    progress
        Show a tqdm progress bar.
    blas_threads
        BLAS thread limit while methods run (``None``: no limit). The matrices here are small,
        and a multi-threaded BLAS can stall for seconds per call on a busy machine.

    Returns
    -------
    One row per task × dataset × method × split with ``macro_f1``, ``accuracy``,
    ``fit_seconds``, ``predict_seconds``, ``peak_memory_mb``, ``n_train``, ``n_test`` and
    ``error`` (empty unless the method failed).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    resolved = resolve_methods(methods)
    splits = make_splits(
        adata,
        labels_key,
        tasks=tasks,
        dataset=dataset,
        query=query,
        query_name=query_name,
        orthologs=orthologs,
        batch_key=batch_key,
        seeds=seeds,
    )
    if not splits:
        reasons = unavailable_tasks(
            adata,
            labels_key,
            tasks,
            query=query,
            orthologs=orthologs,
            batch_key=batch_key,
            seed=seeds[0] if len(seeds) else 0,
        )
        raise ValueError(
            f"None of the tasks {list(tasks)} applies to these inputs: {'; '.join(reasons.values())}."
        )
    rows = []
    progress_bar = tqdm(total=len(splits) * len(resolved), disable=not progress, desc="benchmark", unit="fit")
    with progress_bar as bar, threadpool_limits(limits=blas_threads, user_api="blas"):
        for split in splits:
            for method in resolved:
                bar.set_postfix_str(f"{split.task} {split.split} {method.name}", refresh=False)
                rows.append(evaluate(method, split, labels_key, _seed_of(split)))
                bar.update()
    return pd.DataFrame(rows, columns=list(COLUMNS))
