"""Diagnosis of the PBMC cross-dataset gap (issue 10): cellrep's default vs SingleR, with ablations.

Usage::

    CELLREP_NUM_THREADS=1 python benchmarks/diagnose_cross_pbmc.py zheng68k_reduced pbmc3k
    CELLREP_NUM_THREADS=1 python benchmarks/diagnose_cross_pbmc.py pbmc3k zheng68k_reduced

Builds the ``cross_dataset`` split exactly as ``benchmarks/run_accuracy.py`` does (labels
coarsened by ``coarse_pbmc_labels``, cells and genes restricted to those shared) and prints:

* the gene panel, class counts and sequencing depth on the shared genes;
* per-class F1 and confusion of ``cellrep_default`` and ``singler``, the query's fine labels
  against both, a paired bootstrap interval of the macro-F1 gap, and the cross-lineage errors;
* CD8A/CD8B detection among the T cells by prediction (are the CD4/CD8 labels themselves clear?);
* macro- and per-class F1 of one-change ablations of the default, SingleR variants, and the
  default after binomial thinning of the deeper dataset to the other's median depth.

The ablations diagnose this one task; they are not a way to choose defaults (that is the
leave-one-dataset-out protocol's job in ``run_accuracy.py``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from run_accuracy import DEFAULT_SETTING, coarse_pbmc_labels, load
from scipy import sparse, stats
from sklearn.metrics import confusion_matrix, f1_score

import cellrep as cr
from cellrep.benchmark._methods import cellrep_method, resolve_methods
from cellrep.benchmark._peers import log_cp10k
from cellrep.benchmark._tasks import make_splits

ABLATIONS = {
    "n_genes=100": {"n_genes": 100},
    "n_genes=300": {"n_genes": 300},
    "n_genes=500": {"n_genes": 500},
    "n_comps=20": {"n_comps": 20},
    "n_comps=100": {"n_comps": 100},
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
#: Classes merged to count errors across lineages (a T cell called a DC) apart from the splits
#: within a lineage that the two annotations draw differently.
MARKERS = (
    "CD4",
    "CD8A",
    "CD8B",
    "CCR7",
    "IL7R",
    "NKG7",
    "GNLY",
    "FCGR3A",
    "S100A8",
    "LYZ",
    "FCER1A",
    "HLA-DQA1",
)
LINEAGE = {"CD4 T": "T", "CD8 T": "T", "CD14+ Mono": "myeloid", "DC": "myeloid"}


def _labels(adata) -> np.ndarray:
    return adata.obs["cell_type"].astype(str).to_numpy()


def _predict(method, train, test) -> np.ndarray:
    output = method.predict(method.fit(train.copy(), "cell_type", 0), test.copy())
    return np.asarray(output[0] if isinstance(output, tuple) else output).astype(str)


def _default_with(change: dict):
    options = {**DEFAULT_SETTING, **change}
    normalization = options.pop("normalization", "log")
    classifier = options.pop("classifier", "logreg")
    return cellrep_method(normalization, classifier, name="ablation", **options)


def _lineage_errors(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.array([LINEAGE.get(a, a) != LINEAGE.get(b, b) for a, b in zip(truth, predicted, strict=True)])


def _depth(adata) -> np.ndarray:
    return np.asarray(adata.X.sum(axis=1)).ravel()


def thinned(adata, fraction: float, seed: int = 0):
    """A copy with every count kept with probability ``fraction`` (binomial thinning to a lower depth)."""
    adata = adata.copy()
    adata.X = sparse.csr_matrix(adata.X)
    adata.X.data = (
        np.random.default_rng(seed).binomial(adata.X.data.astype(np.int64), fraction).astype(np.float32)
    )
    adata.X.eliminate_zeros()
    return adata


def spearman_centroid(train, test) -> np.ndarray:
    """Correlation scoring without markers or fine-tuning: Spearman to each class's median log profile."""
    labels, query = _labels(train), np.asarray(log_cp10k(test).X.todense())
    reference = np.asarray(log_cp10k(train).X.todense())
    classes = np.unique(labels)
    profiles = np.stack([np.median(reference[labels == label], axis=0) for label in classes])
    query_ranks, profile_ranks = stats.rankdata(query, axis=1), stats.rankdata(profiles, axis=1)
    query_ranks = (query_ranks - query_ranks.mean(1, keepdims=True)) / query_ranks.std(1, keepdims=True)
    profile_ranks = (profile_ranks - profile_ranks.mean(1, keepdims=True)) / profile_ranks.std(
        1, keepdims=True
    )
    return classes[(query_ranks @ profile_ranks.T).argmax(axis=1)]


def singler_without_fine_tuning(train, test) -> np.ndarray:
    import singler

    reference = singler.train_single(
        sparse.csr_matrix(log_cp10k(train).X.T),
        _labels(train),
        ref_features=list(train.var_names),
        test_features=list(test.var_names),
    )
    result = singler.classify_single(
        sparse.csr_matrix(log_cp10k(test).X.T), ref_prebuilt=reference, use_fine_tune=False
    )
    return np.asarray(result.get_column("best")).astype(str)


def singler_marker_genes(train) -> list[str]:
    """The union of SingleR's classic pairwise markers (its default number per pair) on the reference."""
    import singler

    markers = singler.get_classic_markers(
        sparse.csr_matrix(log_cp10k(train).X.T), _labels(train), list(train.var_names)
    )
    return sorted({gene for pairs in markers.values() for genes in pairs.values() for gene in genes})


def paired_bootstrap(truth, first, second, classes, n_boot: int = 1000, seed: int = 0):
    """Macro-F1(first) - macro-F1(second) and its 95 % interval over query cells resampled with replacement."""

    def gap(index):
        return f1_score(
            truth[index], first[index], labels=classes, average="macro", zero_division=0
        ) - f1_score(truth[index], second[index], labels=classes, average="macro", zero_division=0)

    generator = np.random.default_rng(seed)
    differences = [gap(generator.integers(0, truth.size, truth.size)) for _ in range(n_boot)]
    return gap(np.arange(truth.size)), *np.percentile(differences, [2.5, 97.5])


def marker_profiles(adata, name: str) -> None:
    """Mean log1p CP10k (on the shared genes) of a few lineage markers per fine label: what each label means."""
    genes = [gene for gene in MARKERS if gene in adata.var_names]
    values = pd.DataFrame(np.asarray(log_cp10k(adata)[:, genes].X.todense()), columns=genes)
    _print_frame(f"{name}: mean log1p CP10k of markers by fine label", values.groupby(_labels(adata)).mean())


def em_prior_adapted(train, test) -> np.ndarray:
    """The default's labels after EM re-estimation of the query's class priors (Saerens et al. 2002).

    The balanced classifier's implicit prior is uniform. If the gap were a prior shift, this
    would recover the CD4 T cells; if the query's CD4 T cells sit in the reference's CD8 region,
    the estimated priors follow them there.
    """
    method = _default_with({})
    reference, model = method.fit(train.copy(), "cell_type", 0)
    test = test.copy()
    cr.tl.project(test, reference, standardize=DEFAULT_SETTING["standardize"])
    proba = model.predict_proba(test.obsm["X_linear"])
    prior = np.full(proba.shape[1], 1 / proba.shape[1])
    for _ in range(100):
        adapted = proba * prior * proba.shape[1]
        adapted /= adapted.sum(axis=1, keepdims=True)
        prior = adapted.mean(axis=0)
    print(
        f"\nEM-estimated query priors of the default: {dict(zip(model.classes_, prior.round(3), strict=True))}"
    )
    return model.classes_[adapted.argmax(axis=1)].astype(str)


def _print_frame(title: str, frame: pd.DataFrame) -> None:
    print(f"\n{title}\n{frame.to_string(float_format=lambda value: f'{value:.3f}')}")


def describe(train, test, truth, classes, names) -> None:
    counts = pd.DataFrame(
        {"reference": pd.Series(_labels(train)).value_counts(), "query": pd.Series(truth).value_counts()}
    ).reindex(classes)
    print(f"\n{names}: {train.n_obs} reference and {test.n_obs} query cells on {train.n_vars} shared genes")
    print(
        f"median counts per cell on the shared genes: reference {np.median(_depth(train)):.0f}, "
        f"query {np.median(_depth(test)):.0f}"
    )
    print(counts.to_string())


def compare(predictions: dict, truth, classes, fine, test) -> None:
    table = pd.DataFrame({"cells": pd.Series(truth).value_counts().reindex(classes)})
    for name, predicted in predictions.items():
        table[name] = f1_score(truth, predicted, labels=classes, average=None, zero_division=0)
    table.loc["macro"] = [truth.size, *table.iloc[:, 1:].mean().to_numpy()]
    _print_frame("per-class F1", table)
    depth = _depth(test)
    for name, predicted in predictions.items():
        matrix = pd.DataFrame(
            confusion_matrix(truth, predicted, labels=classes), index=classes, columns=classes
        )
        print(f"\nconfusion of {name} (rows: truth, columns: predicted)\n{matrix.to_string()}")
        by_fine = pd.crosstab(pd.Series(fine, name="query fine label"), pd.Series(predicted, name=name))
        print(f"\nquery fine labels vs {name}\n{by_fine.to_string()}")
        errors = _lineage_errors(truth, predicted)
        print(
            f"{name}: {errors.sum()} cross-lineage errors (CD4/CD8 T and CD14+ Mono/DC merged); "
            f"their median depth {np.median(depth[errors]):.0f}; "
            f"{np.mean(depth[errors] <= np.quantile(depth, 0.1)):.2f} of them in the query's lowest-depth decile"
        )
    observed, low, high = paired_bootstrap(truth, *predictions.values(), classes)
    print(
        f"\nmacro-F1 {' - '.join(predictions)}: {observed:+.3f} "
        f"(95 % paired bootstrap over query cells: {low:+.3f} .. {high:+.3f})"
    )


def cd8_detection(predictions: dict, truth, fine, test) -> None:
    """Fraction of T cells with any CD8A/CD8B count, by fine label and prediction."""
    genes = [gene for gene in ("CD8A", "CD8B") if gene in test.var_names]
    detected = np.asarray(test[:, genes].X.sum(axis=1)).ravel() > 0
    is_t = np.isin(truth, ["CD4 T", "CD8 T"])
    for name, predicted in predictions.items():
        frame = pd.DataFrame({"fine label": fine, name: predicted, "CD8A/B detected": detected})[is_t]
        _print_frame(
            f"{name}: T cells with CD8A/CD8B counts > 0, by fine label and prediction",
            frame.groupby(["fine label", name])["CD8A/B detected"].agg(["mean", "size"]),
        )


def ablate(train, test, truth, classes, predictions: dict) -> None:
    rows = dict(predictions)
    rows["singler, no fine-tuning"] = singler_without_fine_tuning(train, test)
    rows["Spearman to class median (all shared genes)"] = spearman_centroid(train, test)
    for label, change in ABLATIONS.items():
        rows[label] = _predict(_default_with(change), train, test)
    rows["default + EM prior adaptation"] = em_prior_adapted(train, test)
    markers = singler_marker_genes(train)
    rows[f"genes = SingleR's {len(markers)} markers"] = _predict(
        _default_with({}), train[:, markers], test[:, markers]
    )
    ratio = np.median(_depth(test)) / np.median(_depth(train))
    if ratio < 1:
        train, test, side = thinned(train, ratio), test, "reference"
    else:
        train, test, side = train, thinned(test, 1 / ratio), "query"
    fraction = min(ratio, 1 / ratio)
    for name, method in zip(predictions, resolve_methods(list(predictions)), strict=True):
        rows[f"{name}, {side} thinned x{fraction:.2f} to equal depth"] = _predict(method, train, test)
    ablation = pd.DataFrame(
        {
            label: [
                f1_score(truth, predicted, labels=classes, average="macro", zero_division=0),
                _lineage_errors(truth, predicted).sum(),
                *f1_score(truth, predicted, labels=classes, average=None, zero_division=0),
            ]
            for label, predicted in rows.items()
        },
        index=["macro", "lineage errors", *classes],
    ).T
    _print_frame("ablations (one change each; macro-F1, cross-lineage errors, per-class F1)", ablation)


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
    shared = reference.var_names.isin(query.var_names).sum()
    print(f"genes: reference {reference.n_vars}, query {query.n_vars}, shared {shared}")
    split = make_splits(
        coarse_pbmc_labels(reference),
        "cell_type",
        tasks=["cross_dataset"],
        seeds=[0],
        query=coarse_pbmc_labels(query),
    )[0]
    train, test, truth = split.train, split.test, np.asarray(split.truth).astype(str)
    classes = np.unique(truth)
    describe(train, test, truth, classes, f"{args.reference} -> {args.query}")
    methods = resolve_methods(["cellrep_default", "singler"])
    predictions = {method.name: _predict(method, train, test) for method in methods}
    params = methods[0].fit(train.copy(), "cell_type", 0)[0].uns["linear"]["params"]
    print(f"cellrep_default selects {params['n_genes']} genes (HVG) and {params['n_comps']} components")
    fine = query.obs.loc[test.obs_names, "cell_type"].astype(str).to_numpy()
    shared_genes = list(train.var_names)
    marker_profiles(reference[train.obs_names, shared_genes], f"reference {args.reference}")
    marker_profiles(query[test.obs_names, shared_genes], f"query {args.query}")
    compare(predictions, truth, classes, fine, test)
    cd8_detection(predictions, truth, fine, test)
    ablate(train, test, truth, classes, predictions)


if __name__ == "__main__":
    main()
