"""Diagnosis of the PBMC cross-dataset gap (issue 10): cellrep's default vs SingleR, with ablations.

Usage::

    CELLREP_NUM_THREADS=1 python benchmarks/diagnose_cross_pbmc.py zheng68k_reduced pbmc3k
    CELLREP_NUM_THREADS=1 python benchmarks/diagnose_cross_pbmc.py pbmc3k zheng68k_reduced

Builds the ``cross_dataset`` split exactly as ``benchmarks/run_accuracy.py`` does (labels
coarsened by ``coarse_pbmc_labels``, cells and genes restricted to those shared), then prints
the gene panel and class counts, per-class F1 and confusion of ``cellrep_default`` and
``singler``, and the macro-F1 of one-change ablations of the default. The ablations are a
diagnosis of this one task, not a way to choose defaults (that is leave-one-dataset-out's job).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from run_accuracy import DEFAULT_SETTING, coarse_pbmc_labels, load
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score

import cellrep as cr
from cellrep.benchmark._methods import cellrep_method, resolve_methods
from cellrep.benchmark._peers import log_cp10k
from cellrep.benchmark._tasks import make_splits

ABLATIONS = {
    "n_comps=20": {"n_comps": 20},
    "n_comps=100": {"n_comps": 100},
    "n_genes=300": {"n_genes": 300},
    "standardize=query": {"standardize": "query"},
    "no clipping": {"max_value": None},
    "clip ±10": {"max_value": 10.0},
    "C=0.01": {"C": 0.01},
    "C=0.2": {"C": 0.2},
    "C=1": {"C": 1.0},
    "class_weight=None": {"class_weight": None},
    "gene_selection=anova": {"gene_selection": "anova"},
    "whiten": {"whiten": True},
    "normalization=rank_probit": {"normalization": "rank_probit"},
    "classifier=centroid": {"classifier": "centroid"},
    "classifier=knn": {"classifier": "knn"},
}


def _predict(method, train, test) -> np.ndarray:
    output = method.predict(method.fit(train.copy(), "cell_type", 0), test.copy())
    return np.asarray(output[0] if isinstance(output, tuple) else output).astype(str)


def _default_with(change: dict):
    options = {**DEFAULT_SETTING, **change}
    normalization = options.pop("normalization", "log")
    classifier = options.pop("classifier", "logreg")
    return cellrep_method(normalization, classifier, name="ablation", **options)


def spearman_centroid(train, test) -> np.ndarray:
    """SingleR's core without markers or fine-tuning: Spearman correlation to each class's median log profile."""
    train_log, test_log = log_cp10k(train), log_cp10k(test)
    labels = train.obs["cell_type"].astype(str).to_numpy()
    classes = np.unique(labels)
    dense = np.asarray(train_log.X.todense())
    profiles = np.stack([np.median(dense[labels == label], axis=0) for label in classes])
    query_ranks = stats.rankdata(np.asarray(test_log.X.todense()), axis=1)
    profile_ranks = stats.rankdata(profiles, axis=1)
    query_ranks = (query_ranks - query_ranks.mean(1, keepdims=True)) / query_ranks.std(1, keepdims=True)
    profile_ranks = (profile_ranks - profile_ranks.mean(1, keepdims=True)) / profile_ranks.std(1, keepdims=True)
    return classes[(query_ranks @ profile_ranks.T).argmax(axis=1)]


def singler_without_fine_tuning(train, test) -> np.ndarray:
    import singler
    from scipy import sparse

    train_log, test_log = log_cp10k(train), log_cp10k(test)
    reference = singler.train_single(
        sparse.csr_matrix(train_log.X.T),
        train.obs["cell_type"].astype(str).to_numpy(),
        ref_features=list(train.var_names),
        test_features=list(test.var_names),
    )
    result = singler.classify_single(sparse.csr_matrix(test_log.X.T), ref_prebuilt=reference, use_fine_tune=False)
    return np.asarray(result.get_column("best")).astype(str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("query")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("CELLREP_SHARED_DATA", "/work/shared/data"))
    )
    args = parser.parse_args()
    reference = load(args.reference, args.data_dir, cr.datasets.default_data_dir())
    query = load(args.query, args.data_dir, cr.datasets.default_data_dir())
    print(f"genes: reference {reference.n_vars}, query {query.n_vars}, shared {reference.var_names.isin(query.var_names).sum()}")
    split = make_splits(
        coarse_pbmc_labels(reference), "cell_type", tasks=["cross_dataset"], seeds=[0], query=coarse_pbmc_labels(query)
    )[0]
    train, test, truth = split.train, split.test, np.asarray(split.truth).astype(str)
    classes = np.unique(truth)
    counts = pd.DataFrame(
        {
            "reference": train.obs["cell_type"].astype(str).value_counts(),
            "query": pd.Series(truth).value_counts(),
        }
    ).reindex(classes)
    print(f"\n{args.reference} -> {args.query}: {train.n_obs} reference and {test.n_obs} query cells on {train.n_vars} genes")
    print(counts.to_string())

    candidates = {method.name: method for method in resolve_methods(["cellrep_default", "singler"])}
    predictions = {name: _predict(method, train, test) for name, method in candidates.items()}
    fitted = candidates["cellrep_default"].fit(train.copy(), "cell_type", 0)[0]
    params = fitted.uns["linear"]["params"]
    print(f"\ncellrep_default uses {params['n_genes']} genes and {params['n_comps']} components")
    table = pd.DataFrame({"cells": counts["query"]})
    for name, predicted in predictions.items():
        table[name] = f1_score(truth, predicted, labels=classes, average=None, zero_division=0)
    table.loc["macro"] = [counts["query"].sum(), *table.iloc[:, 1:].mean().to_numpy()]
    print("\nper-class F1\n" + table.to_string(float_format=lambda value: f"{value:.3f}"))
    for name, predicted in predictions.items():
        matrix = pd.DataFrame(confusion_matrix(truth, predicted, labels=classes), index=classes, columns=classes)
        print(f"\nconfusion of {name} (rows: truth, columns: predicted)\n{matrix.to_string()}")

    rows = {"default": predictions["cellrep_default"], "singler": predictions["singler"]}
    rows["singler, no fine-tuning"] = singler_without_fine_tuning(train, test)
    rows["Spearman to class median (all shared genes)"] = spearman_centroid(train, test)
    for label, change in ABLATIONS.items():
        rows[label] = _predict(_default_with(change), train, test)
    ablation = pd.DataFrame(
        {
            label: [
                f1_score(truth, predicted, labels=classes, average="macro", zero_division=0),
                *f1_score(truth, predicted, labels=classes, average=None, zero_division=0),
            ]
            for label, predicted in rows.items()
        },
        index=["macro", *classes],
    ).T
    print("\nablations (one change to the default; macro and per-class F1)")
    print(ablation.to_string(float_format=lambda value: f"{value:.3f}"))


if __name__ == "__main__":
    main()
