"""Per-class F1 of cellrep's default and the peers on one benchmark task (the diagnosis of a miss).

Usage::

    python benchmarks/per_class_f1.py DATASET [--task within|cross_dataset|cross_species]
        [--query DATASET] [--orthologs COLUMN] [--methods cellrep_default scanpy celltypist ...]

Fits each method on the task's first split (``within``: seed 0) exactly as
``benchmarks/run_accuracy.py`` does, and prints one row per true class: its cell count and each
method's F1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from run_accuracy import GROUPS, candidate_settings, coarse_pbmc_labels, load
from sklearn.metrics import f1_score

import cellrep as cr
from cellrep.benchmark._methods import resolve_methods
from cellrep.benchmark._tasks import make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--task", default="within")
    parser.add_argument("--query")
    parser.add_argument("--orthologs")
    parser.add_argument(
        "--methods", nargs="+", default=["cellrep_default", "scanpy", "celltypist", "singler"]
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(
            os.environ.get("CELLREP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
        ),
    )
    parser.add_argument("--extra-dir", type=Path, default=cr.datasets.default_data_dir())
    args = parser.parse_args()
    adata = load(args.dataset, args.data_dir, args.extra_dir)
    query = None if args.query is None else load(args.query, args.data_dir, args.extra_dir)
    if args.task == "cross_dataset" and args.dataset in GROUPS["pbmc"]:
        adata, query = coarse_pbmc_labels(adata), coarse_pbmc_labels(query)
    split = make_splits(
        adata, "cell_type", tasks=[args.task], seeds=[0], query=query, orthologs=args.orthologs
    )[0]
    classes, counts = np.unique(split.truth, return_counts=True)
    table = pd.DataFrame({"cells": counts}, index=classes)
    candidates = {method.name: method for method in candidate_settings()}
    for method in resolve_methods([candidates.get(name, name) for name in args.methods]):
        output = method.predict(method.fit(split.train.copy(), "cell_type", 0), split.test.copy())
        predicted = np.asarray(output[0] if isinstance(output, tuple) else output).astype(str)
        table[method.name] = f1_score(split.truth, predicted, labels=classes, average=None, zero_division=0)
    table.loc["macro"] = [counts.sum(), *table.iloc[:, 1:].mean().to_numpy()]
    print(f"{args.task} {args.dataset}" + (f" -> {args.query}" if args.query else ""))
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
