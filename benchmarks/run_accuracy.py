"""Label-transfer accuracy on every real dataset: cellrep's candidate settings vs the peers, with a held-out choice.

Usage::

    python benchmarks/run_accuracy.py [--data-dir ../shared/data] [--extra-dir $CELLREP_DATA_DIR]
        [--out accuracy_results] [--groups baron pbmc oligodendroglioma ...] [--seeds 0 1 2]
        [--peers scanpy sctop celltypist singler] [--novel] [--novel-only]

Tasks: within-dataset (stratified 80/20 splits per seed) on every dataset; leave-one-donor-out
on Baron human (4 donors) and mouse (2 strains); Baron human ↔ mouse across species (one-to-one
orthologs, shared labels); PBMC3k ↔ Zheng68K across datasets (labels coarsened to the six types
both annotate, 765 shared genes). The new datasets (``cr.datasets.oligodendroglioma``,
``cr.datasets.scdcc_dataset``) are read from ``--extra-dir`` (the loaders' cache).

**Leave-one-dataset-out.** Every column (task × dataset) belongs to a dataset group (all Baron
columns form one group, all PBMC columns another). For each group, the cellrep setting with the
smallest mean regret (gap to the best setting of the column) over the *other* groups' columns is
chosen and scored on the held-out group's columns. The script prints that table with the
chosen setting's rank among all methods and its gap to the best peer, and the setting chosen on
all groups (the default). ``--novel`` adds the novel-type task (each type held out of the
reference in turn) for cellrep's default and the peers; the unknown threshold itself is chosen
by ``benchmarks/novelty_threshold.py``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import cellrep as cr
from cellrep.benchmark import Method, cellrep_method, results_table, run_benchmark, write_outputs

SHARED = ("baron_human_subset", "baron_mouse", "pbmc3k", "zheng68k_reduced")
EXTRA = ("oligodendroglioma", "human_kidney", "mouse_bladder", "worm_neuron", "cbmc")
GROUPS = {
    "baron": ("baron_human_subset", "baron_mouse"),
    "pbmc": ("pbmc3k", "zheng68k_reduced"),
    **{name: (name,) for name in EXTRA},
}
CROSS_SPECIES = (
    ("baron_human_subset", "mouse_ortholog", "baron_mouse"),
    ("baron_mouse", "human_ortholog", "baron_human_subset"),
)
CROSS_DATASET = (("pbmc3k", "zheng68k_reduced"), ("zheng68k_reduced", "pbmc3k"))
LOBO = ("baron_human_subset", "baron_mouse")
PEERS = ("scanpy", "sctop", "celltypist", "singler")
NOVEL_DATASETS = ("zheng68k_reduced", "pbmc3k", "baron_human_subset", "human_kidney")
NOVEL_METHODS = ("cellrep_default", "scanpy", "celltypist", "singler")
QUICK_SETTINGS = (
    "cellrep_default",
    "souza_mehta",
    "cellrep_default_C1",
    "cellrep_default_querystd",
    "cellrep_rank_probit_default",
    "cellrep_default_cvC",
    "cellrep_ensemble_log_rank",
)
# Both PBMC annotations mapped to the types they share; FCGR3A+ monocytes, platelets and
# CD34+ progenitors are annotated in one dataset only and drop out of the cross-dataset task.
PBMC_COARSE_LABELS = {
    "Naive CD4 T": "CD4 T",
    "Memory CD4 T": "CD4 T",
    "CD4+/CD25 T Reg": "CD4 T",
    "CD4+/CD45RO+ Memory": "CD4 T",
    "CD4+/CD45RA+/CD25- Naive T": "CD4 T",
    "CD8 T": "CD8 T",
    "CD8+ Cytotoxic T": "CD8 T",
    "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T",
    "B": "B",
    "CD19+ B": "B",
    "NK": "NK",
    "CD56+ NK": "NK",
    "CD14+ Mono": "CD14+ Mono",
    "CD14+ Monocyte": "CD14+ Mono",
    "DC": "DC",
    "Dendritic": "DC",
}
DEFAULT_SETTING = {
    "gene_selection": "hvg",
    "whiten": False,
    "max_value": 4.0,
    "C": 0.05,
    "standardize": "reference",
}


def candidate_settings() -> list[Method]:
    """The cellrep settings the default is chosen from (``cellrep_default`` is today's default)."""
    changes = {
        "C1": {"C": 1.0},
        "C0.2": {"C": 0.2},
        "noclip": {"max_value": None},
        "querystd": {"standardize": "query"},
        "anova": {"gene_selection": "anova"},
        "whiten": {"whiten": True},
    }
    settings = [
        cellrep_method("log", "logreg", name=f"cellrep_default_{name}", **{**DEFAULT_SETTING, **change})
        for name, change in changes.items()
    ]
    settings += [
        cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_default", **DEFAULT_SETTING)
        for normalization in ("rank_probit", "pearson")
    ]
    return [*settings, cv_c_method(), ensemble_method()]


def cv_c_method() -> Method:
    """Adaptive: the default pipeline with C chosen by 3-fold cross-validation on the reference."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    def fit(train, labels_key, seed):
        cr.tl.linear_embedding(train, labels_key=labels_key, random_state=seed, **_embedding_kwargs("log"))
        labels = train.obs[labels_key].astype(str).to_numpy()
        folds = int(min(3, pd.Series(labels).value_counts().min()))
        model = LogisticRegressionCV(
            Cs=[0.01, 0.05, 0.2, 1.0],
            cv=StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed),
            class_weight="balanced",
            max_iter=1000,
            scoring="f1_macro",
        )
        return train, model.fit(train.obsm["X_linear"], labels)

    return Method("cellrep_default_cvC", fit, _predict_linear, default=False, family="variant")


def _embedding_kwargs(normalization: str) -> dict:
    return {"normalization": normalization, "gene_selection": "hvg", "whiten": False, "max_value": 4.0}


def _predict_linear(fitted, test):
    train, model = fitted
    cr.tl.project(test, train, standardize="reference")
    proba = model.predict_proba(test.obsm["X_linear"])
    return model.classes_[proba.argmax(axis=1)].astype(str), proba.max(axis=1)


def ensemble_method() -> Method:
    """Adaptive: the mean of the default's probabilities on the log and the rank-probit views."""
    from sklearn.linear_model import LogisticRegression

    views = ("log", "rank_probit")

    def fit(train, labels_key, seed):
        labels = train.obs[labels_key].astype(str).to_numpy()
        models = []
        for view in views:
            cr.tl.linear_embedding(
                train,
                labels_key=labels_key,
                random_state=seed,
                key_added=f"X_{view}",
                **_embedding_kwargs(view),
            )
            model = LogisticRegression(C=0.05, class_weight="balanced", max_iter=1000, random_state=seed)
            models.append(model.fit(train.obsm[f"X_{view}"], labels))
        return train, models

    def predict(fitted, test):
        train, models = fitted
        proba = 0
        for view, model in zip(views, models, strict=True):
            cr.tl.project(test, train, key=f"X_{view}", standardize="reference")
            proba = proba + model.predict_proba(test.obsm[f"X_{view}"]) / len(views)
        return models[0].classes_[proba.argmax(axis=1)].astype(str), proba.max(axis=1)

    return Method("cellrep_ensemble_log_rank", fit, predict, default=False, family="variant")


def coarse_pbmc_labels(adata):
    """A copy of a PBMC dataset with ``obs['cell_type']`` mapped through ``PBMC_COARSE_LABELS`` (others: NaN)."""
    adata = adata.copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).map(PBMC_COARSE_LABELS).astype("category")
    return adata


def load(name: str, data_dir: Path, extra_dir: Path):
    if name in SHARED:
        return ad.read_h5ad(data_dir / f"{name}.h5ad")
    if name == "oligodendroglioma":
        return cr.datasets.oligodendroglioma(data_dir=extra_dir)
    return cr.datasets.scdcc_dataset(name, data_dir=extra_dir)


def column_of(row) -> str:
    return f"{row.task}:{row.dataset}"


def group_of(dataset: str) -> str:
    source = dataset.split("->")[0]
    return next(group for group, members in GROUPS.items() if source in members)


def leave_one_dataset_out(results: pd.DataFrame, settings: list[str], peers: list[str]) -> pd.DataFrame:
    """For each held-out group: the setting with the least mean regret elsewhere, scored on the group's columns."""
    means = results.groupby(["task", "dataset", "method"])["macro_f1"].mean().reset_index()
    means["column"] = means["task"] + ":" + means["dataset"]
    table = means.pivot(index="column", columns="method", values="macro_f1")
    groups = pd.Series([group_of(column.split(":", 1)[1]) for column in table.index], index=table.index)
    regret = table[settings].max(axis=1).to_numpy()[:, None] - table[settings]
    rows = []
    if groups.nunique() < 2:
        raise ValueError("leave-one-dataset-out needs results of at least two dataset groups.")
    for group in dict.fromkeys(groups):
        chosen = regret[groups != group].mean().idxmin()
        for column in table.index[groups == group]:
            scores = table.loc[column].dropna()
            peer_scores = scores[[peer for peer in peers if peer in scores]]
            rank = int((scores > scores[chosen]).sum()) + 1
            rows.append(
                {
                    "held_out": group,
                    "task": column,
                    "chosen": chosen,
                    "held_out_f1": scores[chosen],
                    "cellrep_default_f1": scores.get("cellrep_default", np.nan),
                    "best_peer": peer_scores.idxmax(),
                    "best_peer_f1": peer_scores.max(),
                    "scanpy_f1": scores.get("scanpy", np.nan),
                    "gap_to_best_peer": scores[chosen] - peer_scores.max(),
                    "gap_to_scanpy": scores[chosen] - scores.get("scanpy", np.nan),
                    "rank": f"{rank}/{scores.size}",
                }
            )
    overall = regret.mean().idxmin()
    print(f"\nsetting chosen on all groups (mean regret {regret.mean().min():.4f}): {overall}")
    print("mean regret of each setting over all columns:")
    print(regret.mean().sort_values().to_string(float_format=lambda value: f"{value:.4f}"))
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    text = frame.copy()
    for column in text.columns:
        if text[column].dtype.kind == "f":
            text[column] = text[column].map(lambda value: f"{value:.3f}")
    rows = [list(map(str, text.columns)), ["---"] * text.shape[1], *text.astype(str).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--extra-dir", type=Path, default=cr.datasets.default_data_dir())
    parser.add_argument("--out", type=Path, default=Path("accuracy_results"))
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--peers", nargs="+", default=list(PEERS))
    parser.add_argument("--novel", action="store_true", help="add the novel-type task")
    parser.add_argument("--novel-only", action="store_true", help="only the novel-type task")
    parser.add_argument("--novel-datasets", nargs="+", default=list(NOVEL_DATASETS))
    parser.add_argument("--novel-methods", nargs="+", default=list(NOVEL_METHODS))
    parser.add_argument("--analyse", action="store_true", help="only re-analyse the results in --out")
    parser.add_argument("--lobo", action="store_true", help="add leave-one-donor-out on the Baron data")
    parser.add_argument(
        "--quick", action="store_true", help=f"only the settings {QUICK_SETTINGS} (for a loaded machine)"
    )
    parser.add_argument("--settings", nargs="+", help="only these cellrep settings (e.g. cellrep_default)")
    args = parser.parse_args()
    if args.analyse:
        done = args.out / "results.csv"
        results = pd.read_csv(done if done.exists() else args.out / "results_partial.csv")
        results["error"] = results["error"].fillna("")
        setting_names = ["cellrep_default", "souza_mehta", *[method.name for method in candidate_settings()]]
        setting_names = [name for name in setting_names if name in set(results["method"])]
        analyse(results, setting_names, list(args.peers), args.out)
        return
    start = time.perf_counter()
    settings = [
        cr.benchmark.METHODS["cellrep_default"],
        cr.benchmark.METHODS["souza_mehta"],
        *candidate_settings(),
    ]
    if args.quick:
        settings = [method for method in settings if method.name in QUICK_SETTINGS]
    if args.settings:
        settings = [method for method in settings if method.name in args.settings]
    methods = settings + list(args.peers)
    datasets = [name for group in args.groups for name in GROUPS[group]]
    data = {name: load(name, args.data_dir, args.extra_dir) for name in datasets}
    tables = []

    def save_partial():
        # every finished dataset is on disk: a run stopped early can still be analysed (--analyse)
        args.out.mkdir(parents=True, exist_ok=True)
        pd.concat(tables, ignore_index=True).to_csv(args.out / "results_partial.csv", index=False)

    def run(name, tasks, method_list, adata=None, **kwargs):
        print(f"== {name}: {tasks} ({time.perf_counter() - start:.0f} s)", flush=True)
        tables.append(
            run_benchmark(
                data[name] if adata is None else adata,
                "cell_type",
                methods=method_list,
                tasks=tasks,
                seeds=args.seeds,
                dataset=name,
                progress=False,
                **kwargs,
            )
        )

    if not args.novel_only:
        for group in args.groups:  # group by group, so that a stopped run holds whole groups
            for name in GROUPS[group]:
                run(
                    name,
                    ["within", "leave_one_batch_out"] if name in LOBO and args.lobo else ["within"],
                    methods,
                )
            if group == "baron":
                for source, column, target in CROSS_SPECIES:
                    run(
                        source,
                        ["cross_species"],
                        methods,
                        query=data[target],
                        query_name=target,
                        orthologs=column,
                    )
            if group == "pbmc":
                coarse = {name: coarse_pbmc_labels(data[name]) for name in GROUPS["pbmc"]}
                for source, target in CROSS_DATASET:
                    run(
                        source,
                        ["cross_dataset"],
                        methods,
                        adata=coarse[source],
                        query=coarse[target],
                        query_name=target,
                    )
            save_partial()
    if args.novel or args.novel_only:
        for name in [name for name in args.novel_datasets if name in datasets]:
            run(name, ["novel_type"], list(args.novel_methods))
            save_partial()
    results = pd.concat(tables, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = write_outputs(results, args.out)
    print(results_table(results))
    failed = results.loc[results["error"] != "", ["method", "dataset", "error"]].drop_duplicates()
    if not failed.empty:
        print("\nfailures:\n" + failed.to_string(index=False))
    analyse(results, [method.name for method in settings], list(args.peers), args.out)
    print(f"\nwrote {', '.join(map(str, paths.values()))}; took {time.perf_counter() - start:.0f} s")


def analyse(results: pd.DataFrame, settings: list[str], peers: list[str], out: Path) -> None:
    """Print (and write) the leave-one-dataset-out tables of the default and of the unknown threshold."""
    standard = results[results["task"] != "novel_type"]
    if not standard.empty:
        lodo = leave_one_dataset_out(standard, settings, peers)
        print("\n## leave-one-dataset-out\n" + _markdown(lodo))
        lodo.to_csv(out / "leave_one_dataset_out.csv", index=False)
    novel = results[results["task"] == "novel_type"]
    if not novel.empty:
        summary = (
            novel.groupby(["dataset", "method"])[
                ["novel_auroc", "known_macro_f1", "novel_unknown_fraction", "known_unknown_fraction"]
            ]
            .mean()
            .reset_index()
        )
        print("\n## novel type (mean over held-out types)\n" + _markdown(summary))
        print(_markdown(summary.groupby("method").mean(numeric_only=True).reset_index()))


if __name__ == "__main__":
    main()
