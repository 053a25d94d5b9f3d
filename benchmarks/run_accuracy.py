"""Label-transfer accuracy on the shared real datasets: cellrep's linear variants vs the peers.

Usage::

    python benchmarks/run_accuracy.py [--data-dir ../shared/data] [--out accuracy_results] [--methods ...]
        [--datasets baron_human_subset baron_mouse pbmc3k zheng68k_reduced] [--no-cross-species]
        [--no-cross-dataset] [--lobo] [--tuning]

Runs the within-dataset task (stratified 80/20 splits, seeds 0, 1, 2) on every dataset, the
cross-species task Baron human → mouse and mouse → human (genes renamed through the
``*_ortholog`` var columns, evaluated on the shared labels) and the cross-dataset task
pbmc3k ↔ zheng68k_reduced (labels coarsened to the types both annotate, see
``PBMC_COARSE_LABELS``; the 765 shared genes). ``--lobo`` adds leave-one-donor-out on the
Baron data; ``--tuning`` replaces the runner-up variants by a wider grid (gene and component
counts, regularization, whitening, standardization). Writes ``results.csv``, ``summary.md`` and ``benchmark.png`` and prints the
markdown table plus, per dataset, the best cellrep method against the best peer.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd

from cellrep.benchmark import (
    DEFAULT_METHODS,
    METHODS,
    cellrep_method,
    results_table,
    run_benchmark,
    write_outputs,
)

DATASETS = ("baron_human_subset", "baron_mouse", "pbmc3k", "zheng68k_reduced")
CROSS_SPECIES = (
    ("baron_human_subset", "mouse_ortholog", "baron_mouse"),
    ("baron_mouse", "human_ortholog", "baron_human_subset"),
)
CROSS_DATASET = (("pbmc3k", "zheng68k_reduced"), ("zheng68k_reduced", "pbmc3k"))
PEERS = ("scanpy", "sctop", "scvi", "cellencoder")
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


def candidate_variants() -> list:
    """Runner-up cellrep settings of the default choice.

    ``cellrep_default`` (what ``cr.tl.transfer_labels`` does by default) is the winner: log
    counts, HVG genes, reference standardization clipped at ±4, no whitening, balanced
    logistic regression with C=0.05. Each variant here changes one or two of those choices.
    """
    default = {
        "gene_selection": "hvg",
        "whiten": False,
        "max_value": 4.0,
        "C": 0.05,
        "standardize": "reference",
    }
    changes = {
        "C1": {"C": 1.0},
        "clip5_C1": {"max_value": 5.0, "C": 1.0},
        "noclip": {"max_value": None},
        "querystd": {"standardize": "query"},
        "anova": {"gene_selection": "anova"},
        "whiten": {"whiten": True},
        "g4000": {"n_genes": 4000},
    }
    variants = [
        cellrep_method("log", "logreg", name=f"cellrep_default_{name}", **{**default, **change})
        for name, change in changes.items()
    ]
    for normalization in ("rank_probit", "pearson"):
        variants.append(
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_default", **default)
        )
    return variants


def tuning_variants() -> list:
    """Extra cellrep settings for choosing defaults (reported, never picked per dataset)."""
    variants = []
    for normalization in ("log", "rank_probit", "pearson"):
        variants += [
            cellrep_method(
                normalization, "logreg", name=f"cellrep_{normalization}_logreg_g1000", n_genes=1000
            ),
            cellrep_method(
                normalization, "logreg", name=f"cellrep_{normalization}_logreg_g4000", n_genes=4000
            ),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_c100", n_comps=100),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_C0.1", C=0.1),
            cellrep_method(
                normalization, "logreg", name=f"cellrep_{normalization}_logreg_nowhiten", whiten=False
            ),
            cellrep_method(
                normalization,
                "logreg",
                name=f"cellrep_{normalization}_logreg_refstd",
                standardize="reference",
            ),
        ]
    return variants


def coarse_pbmc_labels(adata):
    """A copy of a PBMC dataset with ``obs['cell_type']`` mapped through ``PBMC_COARSE_LABELS`` (others: NaN)."""
    adata = adata.copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).map(PBMC_COARSE_LABELS).astype("category")
    return adata


def best_versus_peers(results: pd.DataFrame) -> pd.DataFrame:
    """Per task × dataset: the best cellrep method and the best peer by mean macro-F1."""
    means = results.groupby(["task", "dataset", "method"])["macro_f1"].mean().reset_index()
    means["family"] = ["peer" if method in PEERS else "cellrep" for method in means["method"]]
    rows = []
    for (task, dataset), group in means.groupby(["task", "dataset"]):
        best = {
            family: part.loc[part["macro_f1"].idxmax()]
            for family, part in group.groupby("family")
            if part["macro_f1"].notna().any()
        }
        scanpy = group.loc[group["method"] == "scanpy", "macro_f1"]
        rows.append(
            {
                "task": task,
                "dataset": dataset,
                "best_cellrep": best["cellrep"]["method"] if "cellrep" in best else None,
                "cellrep_f1": best["cellrep"]["macro_f1"] if "cellrep" in best else float("nan"),
                "best_peer": best["peer"]["method"] if "peer" in best else None,
                "peer_f1": best["peer"]["macro_f1"] if "peer" in best else float("nan"),
                "scanpy_f1": scanpy.iloc[0] if len(scanpy) else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    table["margin_vs_best_peer"] = table["cellrep_f1"] - table["peer_f1"]
    table["margin_vs_scanpy"] = table["cellrep_f1"] - table["scanpy_f1"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--out", type=Path, default=Path("accuracy_results"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-cross-species", action="store_true")
    parser.add_argument("--no-cross-dataset", action="store_true", help="skip pbmc3k <-> zheng68k_reduced")
    parser.add_argument("--lobo", action="store_true", help="add leave-one-donor-out on the Baron data")
    parser.add_argument("--tuning", action="store_true", help="add cellrep tuning variants")
    args = parser.parse_args()

    methods = list(args.methods) + (tuning_variants() if args.tuning else candidate_variants())
    needed = set(args.datasets) | (
        {"baron_human_subset", "baron_mouse"} if not args.no_cross_species else set()
    )
    needed |= {"pbmc3k", "zheng68k_reduced"} if not args.no_cross_dataset else set()
    read = {name: ad.read_h5ad(args.data_dir / f"{name}.h5ad") for name in needed}
    tables = []
    for name in args.datasets:
        tasks = ["within", "leave_one_batch_out"] if args.lobo and name.startswith("baron") else ["within"]
        print(f"== {name}: {tasks}", flush=True)
        tables.append(
            run_benchmark(
                read[name], "cell_type", methods=methods, tasks=tasks, seeds=args.seeds, dataset=name
            )
        )
    if not args.no_cross_species:
        for source, column, target in CROSS_SPECIES:
            print(f"== cross-species {source} -> {target}", flush=True)
            tables.append(
                run_benchmark(
                    read[source],
                    "cell_type",
                    methods=methods,
                    tasks=["cross_species"],
                    dataset=source,
                    query=read[target],
                    query_name=target,
                    orthologs=column,
                )
            )
    if not args.no_cross_dataset:
        coarse = {name: coarse_pbmc_labels(read[name]) for name in ("pbmc3k", "zheng68k_reduced")}
        for source, target in CROSS_DATASET:
            print(f"== cross-dataset {source} -> {target}", flush=True)
            tables.append(
                run_benchmark(
                    coarse[source],
                    "cell_type",
                    methods=methods,
                    tasks=["cross_dataset"],
                    dataset=source,
                    query=coarse[target],
                    query_name=target,
                )
            )
    results = pd.concat(tables, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = write_outputs(results, args.out)
    print(results_table(results))
    print()
    print(best_versus_peers(results).to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print("\nwrote " + ", ".join(map(str, paths.values())))


if __name__ == "__main__":
    main()
