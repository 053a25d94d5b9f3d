"""Novel-type detection of ``transfer_labels``: the certainty and the default ``unknown_threshold``.

Usage::

    python benchmarks/novelty_threshold.py collect OUT.csv DATASET [DATASET ...]   # within-dataset
    python benchmarks/novelty_threshold.py cross OUT.csv PAIR [PAIR ...]           # across datasets/species
    python benchmarks/novelty_threshold.py choose OUT.csv [OUT.csv ...]            # the held-out tables
    (collect and cross also take [--data-dir ../shared/data] [--extra-dir $CELLREP_DATA_DIR])

``collect``: the novel-type splits of the benchmark (one stratified 80/20 split, each type
with ≥ 10 test cells removed from the training part in turn), ``transfer_labels`` with
``unknown_threshold=0``; per test cell its top probability, reference p-value, prediction,
truth and whether its type is novel. ``cross``: the same on the cross pairs (``baron_h->m``,
``baron_m->h``, ``pbmc3k->zheng``, ``zheng->pbmc3k``), each shared type held out of the
reference in turn. ``choose``: leave-one-dataset-out by dataset group (Baron, PBMC, each other
dataset): for each held-out group, the threshold with the best mean macro-F1 on the other
groups, where the novel cells' true label is ``'unknown'``, scored on the held-out group; for
the top probability alone and for the certainty (top probability × p^0.25). Datasets are read
as in ``run_accuracy.py``: from ``--data-dir`` (default ``../shared/data``), else ``--extra-dir``
(default: the ``cr.datasets`` loaders' cache, ``CELLREP_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
GROUPS = {
    "baron_human_subset": "baron",
    "baron_mouse": "baron",
    "baron_h->m": "baron",
    "baron_m->h": "baron",
    "pbmc3k": "pbmc",
    "zheng68k_reduced": "pbmc",
    "pbmc3k->zheng": "pbmc",
    "zheng->pbmc3k": "pbmc",
}
THRESHOLDS = [0.0, *np.round(np.arange(0.05, 0.95, 0.05), 2)]


def _load(name: str, dirs: tuple[Path, Path]):
    from run_accuracy import load

    return load(name, *dirs)


def _cells(dataset, split, reference, query, truth, novel) -> pd.DataFrame:
    import cellrep as cr

    cr.tl.transfer_labels(reference, query, labels_key="cell_type", unknown_threshold=0)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "split": split,
            "maxprob": query.obs["cell_type_confidence"].to_numpy(),
            "pvalue": query.obs["cell_type_reference_pvalue"].to_numpy(),
            "pred": query.obs["cell_type_pred"].astype(str).to_numpy(),
            "truth": truth,
            "novel": novel,
        }
    )


def collect(out: str, names: list[str], dirs: tuple[Path, Path]) -> None:
    from cellrep.benchmark._tasks import novel_type_splits

    frames = []
    for name in names:
        for split in novel_type_splits(_load(name, dirs), "cell_type", name, 0):
            frames.append(_cells(name, split.split, split.train, split.test, split.truth, split.novel))
            print(name, split.split, flush=True)
        pd.concat(frames).to_csv(out, index=False)


def cross(out: str, names: list[str], dirs: tuple[Path, Path]) -> None:
    from run_accuracy import coarse_pbmc_labels

    from cellrep.benchmark._tasks import cross_splits

    human, mouse = _load("baron_human_subset", dirs), _load("baron_mouse", dirs)
    pbmc3k, zheng = (coarse_pbmc_labels(_load(name, dirs)) for name in ("pbmc3k", "zheng68k_reduced"))
    pairs = {
        "baron_h->m": (human, mouse, "mouse_ortholog"),
        "baron_m->h": (mouse, human, "human_ortholog"),
        "pbmc3k->zheng": (pbmc3k, zheng, None),
        "zheng->pbmc3k": (zheng, pbmc3k, None),
    }
    frames = []
    for name in names:
        reference, query, orthologs = pairs[name]
        split = next(cross_splits(reference, query, "cell_type", name, name, orthologs))
        types, counts = np.unique(split.truth, return_counts=True)
        for held in ["none", *types[counts >= 10]]:
            kept = split.train[split.train.obs["cell_type"].astype(str) != held].copy()
            frames.append(
                _cells(name, f"novel:{held}", kept, split.test.copy(), split.truth, split.truth == held)
            )
            print(name, held, flush=True)
        pd.concat(frames).to_csv(out, index=False)


def choose(files: list[str]) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    cells = pd.concat([pd.read_csv(file) for file in files], ignore_index=True)
    cells = cells[cells["split"] != "novel:none"]
    cells["pred"], cells["truth"] = cells["pred"].astype(str), cells["truth"].astype(str)
    scores = {
        "top probability": lambda frame: frame["maxprob"].to_numpy(),
        "certainty": lambda frame: frame["maxprob"].to_numpy() * frame["pvalue"].to_numpy() ** 0.25,
    }
    for name, score_of in scores.items():
        rows = []
        for (dataset, _split), frame in cells.groupby(["dataset", "split"]):
            score, novel = score_of(frame), frame["novel"].to_numpy()
            truth = np.where(novel, "unknown", frame["truth"])
            auroc = roc_auc_score(novel, -score)
            for threshold in THRESHOLDS:
                called = score < threshold
                predicted = np.where(called, "unknown", frame["pred"])
                f1 = f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0)
                rows.append((dataset, threshold, f1, called[novel].mean(), called[~novel].mean(), auroc))
        table = pd.DataFrame(rows, columns=["dataset", "threshold", "f1", "novel", "known", "auroc"])
        table = table.groupby(["dataset", "threshold"]).mean().reset_index()
        f1 = table.pivot(index="threshold", columns="dataset", values="f1")
        group = pd.Series([GROUPS.get(dataset, dataset) for dataset in f1.columns], index=f1.columns)
        held = []
        for name_of_group in group.unique():
            chosen = f1.loc[:, group != name_of_group].mean(axis=1).idxmax()
            for dataset in f1.columns[group == name_of_group]:
                at = table[(table["dataset"] == dataset) & (table["threshold"] == chosen)].iloc[0]
                none = table[(table["dataset"] == dataset) & (table["threshold"] == 0)].iloc[0]
                held.append(
                    {
                        "held out": dataset,
                        "threshold": chosen,
                        "macro-F1 with unknown": at["f1"],
                        "no unknown call": none["f1"],
                        "novel called unknown": at["novel"],
                        "known called unknown": at["known"],
                        "novel AUROC": at["auroc"],
                    }
                )
        held = pd.DataFrame(held)
        print(f"\n## {name}: chosen on all groups {f1.mean(axis=1).idxmax()}")
        print(held.to_markdown(index=False, floatfmt=".3f"))
        print("mean:", held.mean(numeric_only=True).round(3).to_dict())


PAIRS = ("baron_h->m", "baron_m->h", "pbmc3k->zheng", "zheng->pbmc3k")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, what, help_ in (
        ("collect", "dataset", "within-dataset novel-type splits of these datasets"),
        ("cross", "pair", f"cross pairs among {', '.join(PAIRS)}"),
    ):
        sub = commands.add_parser(command, help=help_)
        sub.add_argument("out", help="CSV written with one row per test cell")
        sub.add_argument(what, nargs="+", choices=PAIRS if command == "cross" else None)
        sub.add_argument(
            "--data-dir", type=Path, default=SHARED_DIR, help="shared data (default: %(default)s)"
        )
        sub.add_argument("--extra-dir", type=Path, help="cr.datasets cache (default: CELLREP_DATA_DIR)")
    choose_parser = commands.add_parser("choose", help="leave-one-dataset-out thresholds from collected CSVs")
    choose_parser.add_argument("files", nargs="+", help="CSVs written by collect / cross")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.command == "choose":
        choose(args.files)
        return
    import cellrep as cr

    dirs = (args.data_dir, args.extra_dir or cr.datasets.default_data_dir())
    if args.command == "collect":
        collect(args.out, args.dataset, dirs)
    else:
        cross(args.out, args.pair, dirs)


if __name__ == "__main__":
    main()
