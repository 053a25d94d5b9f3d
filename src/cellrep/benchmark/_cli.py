"""The ``cellrep`` command line: ``cellrep benchmark`` compares label-transfer methods and writes a report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = "cellrep_benchmark"
DEFAULT_LABELS = "cell_type"
EMBEDDED_LABELS = "bulk_labels"


def build_parser() -> argparse.ArgumentParser:
    from ._methods import DEFAULT_METHODS, METHODS
    from ._tasks import DEFAULT_TASKS, TASKS

    parser = argparse.ArgumentParser(
        prog="cellrep", description="Single-cell representations: command line tools."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "benchmark",
        help="benchmark label transfer (cellrep vs scanpy, scTOP, scVI)",
        description=(
            "Benchmark label transfer: every cellrep linear variant against the scanpy standard pipeline, "
            "the sctop package and (optionally) scVI. Without --data it runs offline on the embedded "
            "PBMC68k subset (cr.datasets.pbmc68k_reduced_counts, labels 'bulk_labels'). Prints a table "
            "and writes results.csv, summary.md and benchmark.png to --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument(
        "--data", type=Path, help="labelled .h5ad with raw counts in X (default: the embedded dataset)"
    )
    bench.add_argument(
        "--labels",
        help=f"obs column with cell types (default: {DEFAULT_LABELS}; {EMBEDDED_LABELS} for the embedded data)",
    )
    bench.add_argument(
        "--query", type=Path, help="second labelled .h5ad for the cross-dataset / cross-species task"
    )
    bench.add_argument(
        "--orthologs", help="var column of --data naming each gene's ortholog in the query species"
    )
    bench.add_argument(
        "--batch-key", default="batch", help="obs column with donors/batches for leave-one-batch-out"
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=sorted(METHODS),
        metavar="METHOD",
        help=f"methods to run; available: {', '.join(sorted(METHODS))}",
    )
    bench.add_argument(
        "--tasks",
        nargs="+",
        default=list(DEFAULT_TASKS),
        choices=TASKS,
        metavar="TASK",
        help=f"tasks: {', '.join(TASKS)}",
    )
    bench.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the stratified 80/20 splits"
    )
    bench.add_argument(
        "--encoder-minutes",
        type=float,
        default=1.0,
        help="CPU minutes of CellEncoder pretraining per split (methods cellencoder*)",
    )
    bench.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _load(args) -> tuple:
    """``(data, labels_key, dataset_name, query, query_name)`` from the arguments."""
    import anndata as ad

    if args.data is None:
        from ..datasets import pbmc68k_reduced_counts

        data, labels_key, name = pbmc68k_reduced_counts(), args.labels or EMBEDDED_LABELS, "pbmc68k_reduced"
    else:
        data, labels_key, name = ad.read_h5ad(args.data), args.labels or DEFAULT_LABELS, args.data.stem
    query = None if args.query is None else ad.read_h5ad(args.query)
    return data, labels_key, name, query, None if args.query is None else args.query.stem


def benchmark_command(args) -> int:
    from ._encoder_methods import set_encoder_minutes
    from ._report import results_table, write_outputs
    from ._run import run_benchmark

    set_encoder_minutes(args.encoder_minutes)
    data, labels_key, name, query, query_name = _load(args)
    results = run_benchmark(
        data,
        labels_key,
        methods=args.methods,
        tasks=args.tasks,
        seeds=args.seeds,
        dataset=name,
        query=query,
        query_name=query_name or "query",
        orthologs=args.orthologs,
        batch_key=args.batch_key,
        progress=not args.no_progress,
    )
    print(results_table(results))
    failed = results.loc[results["error"] != "", ["method", "error"]].drop_duplicates()
    for method, error in failed.itertuples(index=False):
        print(f"warning: {method} failed: {error}", file=sys.stderr)
    paths = write_outputs(results, args.out)
    print("\nwrote " + ", ".join(str(path) for path in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellrep`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "benchmark":
        return benchmark_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
