"""The ``cellrep`` command line: ``cellrep benchmark`` compares label-transfer methods and writes a report.

The parser imports nothing heavy, so ``cellrep --help`` answers at once; the harness (numba,
scanpy, sklearn) is imported only to run. Every input is checked (:mod:`._cli_checks`) before
the first fit: a bad input gives one line on stderr and exit status 2 (``--debug`` shows the
traceback). A run in which any fit failed exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = "cellrep_benchmark"
DEFAULT_LABELS = "cell_type"
EMBEDDED_LABELS = "bulk_labels"
# kept equal to the harness's TASKS / DEFAULT_TASKS by tests/benchmark/test_cli.py (importing them would slow --help)
KNOWN_TASKS = ("within", "leave_one_batch_out", "cross_dataset", "cross_species", "novel_type")
DEFAULT_TASKS = ("within", "leave_one_batch_out", "cross_dataset", "cross_species")
EXIT_BAD_INPUT = 2
EXIT_FAILED_FITS = 1

METHODS_HELP = (
    "methods to run, or 'all' (default: the default set, see below; --list-methods prints every "
    "method with its description)"
)
# tests/benchmark/test_cli.py checks that this names exactly the harness's DEFAULT_METHODS
EPILOG = """\
default method set:
  cellrep_default  cr.tl.transfer_labels with its default settings: the pipeline cellrep
                   recommends (log normalization, linear embedding, logistic regression)
  souza_mehta      the Souza-Mehta recipe (rank_probit, linear embedding, logistic regression)
  scanpy           scanpy's standard pipeline + logistic regression
  sctop            the sctop package
  celltypist       CellTypist trained on the reference
  singler          SingleR with the reference as its reference
  '--methods all' adds every cellrep variant (normalization log, pearson or rank_probit, then a
  logreg, knn, centroid or local_logreg classifier) and the other fast peers; the learned models
  (scvi, scanvi, cellencoder) run only when named.

exit status:
  0 every fit succeeded; 1 some fits failed (listed on stderr, counted in the last line);
  2 bad input (one line on stderr, checked before the first fit; --debug shows the traceback).
"""


class InputError(Exception):
    """A bad command-line input: reported as one line on stderr with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellrep", description="Single-cell representations: command line tools."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "benchmark",
        help="benchmark label transfer (cellrep vs scanpy, scTOP, CellTypist, SingleR, scVI, ...)",
        description=(
            "Benchmark label transfer: by default cellrep's transfer_labels and the Souza-Mehta recipe "
            "against the scanpy standard pipeline, the sctop package, CellTypist and SingleR, on every task "
            "the inputs allow (see the method set below; --tasks novel_type adds the novel-type task). "
            "Without --data it runs offline on the embedded "
            "PBMC68k subset (cr.datasets.pbmc68k_reduced_counts, labels 'bulk_labels'). Prints a table "
            "and writes results.csv, summary.md and benchmark.png to --out. Fit times exclude the "
            "one-off numba compilation, which a warm-up on a few cells does first."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--data",
        type=Path,
        help="labelled .h5ad (or .zarr store with --lazy) with raw counts in X or --layer (default: the embedded dataset)",
    )
    bench.add_argument(
        "--labels",
        help=f"obs column with cell types (default: {DEFAULT_LABELS}, or {EMBEDDED_LABELS} for the embedded data)",
    )
    bench.add_argument(
        "--layer", help="layer of --data (and --query, when it has it) with the raw counts (default: X)"
    )
    bench.add_argument(
        "--query",
        type=Path,
        help="second labelled .h5ad for the cross-dataset / cross-species task (default: none)",
    )
    bench.add_argument(
        "--orthologs",
        help="var column of --data naming each gene's ortholog in the query species; makes the cross task "
        "cross_species (default: none)",
    )
    bench.add_argument(
        "--batch-key",
        default="batch",
        help="obs column with donors/batches for leave_one_batch_out (default: batch)",
    )
    bench.add_argument("--methods", nargs="+", metavar="METHOD", help=METHODS_HELP)
    bench.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help=f"tasks among {', '.join(KNOWN_TASKS)} (default: {' '.join(DEFAULT_TASKS)}, those the inputs allow)",
    )
    bench.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="seeds of the stratified 80/20 splits (default: 0 1 2)",
    )
    bench.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})"
    )
    bench.add_argument(
        "--overwrite", action="store_true", help="write into --out even if it already holds files"
    )
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    bench.add_argument("--list-methods", action="store_true", help="print the available methods and exit")
    bench.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    bench.add_argument(
        "--encoder-minutes",
        type=float,
        default=1.0,
        help="CPU minutes of CellEncoder pretraining per split (methods cellencoder*; default: 1.0)",
    )
    from ._annotate import add_annotate_parser, add_dask_arguments

    add_dask_arguments(bench, what="--data and --query")
    add_annotate_parser(commands)
    return parser


def list_methods() -> str:
    from ._methods import METHODS

    lines = []
    for name, method in METHODS.items():
        marker = "*" if method.default else " "
        lines.append(f"{marker} {name:34s} {method.description}".rstrip())
    return "\n".join([*lines, "", "* = in the default set"])


def resolve_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that need the harness (methods, tasks) and reject unknown names."""
    from ._annotate import resolve_dask_arguments
    from ._methods import DEFAULT_METHODS, METHODS

    resolve_dask_arguments(args)
    if args.methods is None:
        args.methods = list(DEFAULT_METHODS)
    unknown = [name for name in args.methods if name not in METHODS and name != "all"]
    if unknown:
        raise InputError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(METHODS))} "
            "(see --list-methods)"
        )
    args.tasks_given = args.tasks is not None
    if args.tasks is None:
        args.tasks = list(DEFAULT_TASKS)
    unknown = [name for name in args.tasks if name not in KNOWN_TASKS]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_TASKS)}")
    return args


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and resolve the arguments; unknown methods or tasks exit with status 2, as argparse errors do."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "benchmark" and not args.list_methods:
        try:
            resolve_arguments(args)
        except InputError as error:
            parser.exit(EXIT_BAD_INPUT, f"cellrep benchmark: error: {error}\n")
    return args


def benchmark_command(args) -> int:
    from ._cli_checks import check_output_folder, load_inputs

    check_output_folder(args.out, overwrite=args.overwrite)
    first_run = not _kernels_cached()  # before the input checks run (and cache) the first kernel
    inputs = load_inputs(args)
    from ._encoder_methods import set_encoder_minutes
    from ._methods import resolve_methods
    from ._report import results_table, write_outputs
    from ._run import run_benchmark

    methods = resolve_methods(args.methods)
    if args.lazy:
        from ._lazy import lazy_methods

        methods = lazy_methods(methods, inputs)

    set_encoder_minutes(0.05)  # the warm-up only needs the encoder code paths, not a pretraining
    options = {
        "tasks": args.tasks,
        "dataset": inputs.name,
        "query": inputs.query,
        "query_name": inputs.query_name or "query",
        "orthologs": args.orthologs,
        "batch_key": args.batch_key,
    }
    with _scheduler(args):
        _warm_up(inputs, methods, args, first_run=first_run)
        set_encoder_minutes(args.encoder_minutes)
        results = run_benchmark(
            inputs.data,
            inputs.labels_key,
            methods=methods,
            seeds=args.seeds,
            progress=not args.no_progress,
            **options,
        )
    print(results_table(results))
    paths = write_outputs(results, args.out)
    print("\nwrote " + ", ".join(str(path) for path in paths.values()))
    return _report_failures(results)


def _scheduler(args):
    """The dask scheduler of ``--lazy`` (a progress bar for every computation over a second), else nothing."""
    from contextlib import nullcontext

    if not args.lazy:
        return nullcontext()
    from ._annotate import dask_scheduler

    return dask_scheduler(args.scheduler, progress=not args.no_progress, minimum_seconds=1.0)


def _warm_up(inputs, methods, args, *, first_run: bool) -> None:
    """Fit and predict every method once on a few cells, so numba compiles (first run only) outside the timed fits."""
    from tqdm.auto import tqdm

    from ._cli_checks import small_subset
    from ._run import evaluate
    from ._tasks import make_splits

    subset = small_subset(inputs.data, inputs.labels_key)
    if subset is None:
        return
    split = make_splits(subset, inputs.labels_key, tasks=["within"], dataset="warm-up", seeds=[0])[0]
    # the slow learned models compile nothing with numba; warming them up would only double their cost
    methods = [method for method in methods if not method.slow]
    description = "compiling numba kernels (first run only)" if first_run else "warm-up"
    with tqdm(methods, desc=description, unit="method", disable=args.no_progress) as bar:
        for method in bar:
            bar.set_postfix_str(method.name, refresh=False)
            evaluate(method, split, inputs.labels_key, 0)  # a failure shows in the timed run


def _kernels_cached() -> bool:
    """Whether numba's on-disk cache already holds cellrep's kernels (then the warm-up compiles nothing)."""
    import os

    try:
        from .._kernels._validation import scan_flat

        return os.path.exists(scan_flat._cache._cache_file._index_path)
    except (AttributeError, ImportError):  # numba internals moved, or JIT disabled
        return False


def _report_failures(results) -> int:
    failed = results["error"].fillna("") != ""
    n_fits = len(results)
    if not failed.any():
        print(f"all {n_fits} fits succeeded")
        return 0
    for method, error in results.loc[failed, ["method", "error"]].drop_duplicates().itertuples(index=False):
        print(f"error: {method} failed: {error}", file=sys.stderr)
    methods = ", ".join(sorted(set(results.loc[failed, "method"])))
    print(
        f"{int(failed.sum())} of {n_fits} fits failed ({methods}); see the error column of results.csv",
        file=sys.stderr,
    )
    return EXIT_FAILED_FITS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellrep`` command."""
    args = parse_arguments(argv)
    if args.command == "benchmark" and args.list_methods:
        print(list_methods())
        return 0
    if args.command == "annotate":
        from ._annotate import annotate_command as run_command
    else:
        run_command = benchmark_command
    try:
        return run_command(args)
    except (InputError, FileNotFoundError, ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        message = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
        print(f"cellrep {args.command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
