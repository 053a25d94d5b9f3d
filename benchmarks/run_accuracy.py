"""Label-transfer accuracy on the shared real datasets: cellrep's linear variants vs the peers.

Usage::

    python benchmarks/run_accuracy.py [--data-dir ../shared/data] [--out accuracy_results] [--methods ...]
        [--datasets baron_human_subset baron_mouse pbmc3k zheng68k_reduced] [--no-cross-species]
        [--lobo] [--tuning]

Runs the within-dataset task (stratified 80/20 splits, seeds 0, 1, 2) on every dataset and
the cross-species task Baron human → mouse and mouse → human (genes renamed through the
``*_ortholog`` var columns, evaluated on the shared labels). ``--lobo`` adds leave-one-donor-out
on the Baron data; ``--tuning`` replaces the runner-up variants by a wider grid (gene and
component counts, regularization, whitening, standardization). Writes ``results.csv``, ``summary.md`` and ``benchmark.png`` and prints the
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
CROSS_SPECIES = (("baron_human_subset", "mouse_ortholog", "baron_mouse"), ("baron_mouse", "human_ortholog", "baron_human_subset"))
PEERS = ("scanpy", "sctop", "scvi", "cellencoder")


def candidate_variants() -> list:
    """Runner-up cellrep settings of the default choice (``cellrep_default`` is the winner:
    log counts, HVG genes, reference standardization clipped at ±5, no whitening)."""
    return [
        cellrep_method("log", "logreg", name="cellrep_log_logreg_nowhiten", whiten=False),
        cellrep_method("pearson", "logreg", name="cellrep_pearson_logreg_nowhiten", whiten=False),
        cellrep_method("rank_probit", "logreg", name="cellrep_rank_probit_logreg_refstd", standardize="reference"),
    ]


def tuning_variants() -> list:
    """Extra cellrep settings for choosing defaults (reported, never picked per dataset)."""
    variants = []
    for normalization in ("log", "rank_probit", "pearson"):
        variants += [
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_g1000", n_genes=1000),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_g4000", n_genes=4000),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_c100", n_comps=100),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_C0.1", C=0.1),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_nowhiten", whiten=False),
            cellrep_method(normalization, "logreg", name=f"cellrep_{normalization}_logreg_refstd", standardize="reference"),
        ]
    return variants


def best_versus_peers(results: pd.DataFrame) -> pd.DataFrame:
    """Per task × dataset: the best cellrep method and the best peer by mean macro-F1."""
    means = results.groupby(["task", "dataset", "method"])["macro_f1"].mean().reset_index()
    means["family"] = ["peer" if method in PEERS else "cellrep" for method in means["method"]]
    rows = []
    for (task, dataset), group in means.groupby(["task", "dataset"]):
        best = {family: part.loc[part["macro_f1"].idxmax()] for family, part in group.groupby("family") if part["macro_f1"].notna().any()}
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
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("accuracy_results"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-cross-species", action="store_true")
    parser.add_argument("--lobo", action="store_true", help="add leave-one-donor-out on the Baron data")
    parser.add_argument("--tuning", action="store_true", help="add cellrep tuning variants")
    args = parser.parse_args()

    methods = list(args.methods) + (tuning_variants() if args.tuning else candidate_variants())
    read = {name: ad.read_h5ad(args.data_dir / f"{name}.h5ad") for name in set(args.datasets) | {"baron_human_subset", "baron_mouse"}}
    tables = []
    for name in args.datasets:
        tasks = ["within", "leave_one_batch_out"] if args.lobo and name.startswith("baron") else ["within"]
        print(f"== {name}: {tasks}", flush=True)
        tables.append(run_benchmark(read[name], "cell_type", methods=methods, tasks=tasks, seeds=args.seeds, dataset=name))
    if not args.no_cross_species:
        for source, column, target in CROSS_SPECIES:
            print(f"== cross-species {source} -> {target}", flush=True)
            tables.append(
                run_benchmark(
                    read[source], "cell_type", methods=methods, tasks=["cross_species"], dataset=source,
                    query=read[target], query_name=target, orthologs=column,
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
