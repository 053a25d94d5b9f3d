"""``cellrep annotate``: label a query from a labelled reference, optionally straight from disk with dask.

With ``--lazy`` the query's counts stay on disk (:func:`cellrep.read_lazy`, chunks of
``--chunk-size`` cells) and are read chunk by chunk on the ``--scheduler``: ``threads`` (this
process), ``processes`` (a local dask.distributed cluster) or the address of a running
scheduler (``tcp://host:8786``, from dask-jobqueue or Kubernetes). A progress bar follows the chunks.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

SCHEDULERS = ("threads", "processes")


def add_annotate_parser(commands) -> None:
    """Register the ``annotate`` subcommand on an argparse subparsers object."""
    annotate = commands.add_parser(
        "annotate",
        help="label a query .h5ad/.zarr from a labelled reference (cr.tl.transfer_labels)",
        description=(
            "Predict the reference's labels for every query cell with cr.tl.transfer_labels and write "
            "them (prediction and confidence per cell) to a CSV. --lazy keeps the query on disk and "
            "reads it in chunks of cells with dask, so a query larger than memory can be annotated."
        ),
    )
    annotate.add_argument("--reference", type=Path, required=True, help="labelled .h5ad with raw counts in X")
    annotate.add_argument("--query", type=Path, required=True, help=".h5ad or .zarr with raw counts in X")
    annotate.add_argument(
        "--labels",
        default="cell_type",
        help="obs column of the reference with the labels (default: cell_type)",
    )
    annotate.add_argument(
        "--orthologs",
        metavar="COLUMN",
        help="var column of --reference naming each gene's one-to-one ortholog in the query's species "
        "(cr.tl.map_orthologs), for a reference and a query of different species (default: none)",
    )
    annotate.add_argument(
        "--method",
        default="logreg",
        choices=("logreg", "centroid", "sctop"),
        help="transfer method (default: logreg)",
    )
    annotate.add_argument(
        "--out",
        type=Path,
        default=Path("labels.csv"),
        help="CSV with one row per query cell (default: labels.csv)",
    )
    annotate.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    add_dask_arguments(annotate)


def add_dask_arguments(parser, *, what: str = "the query") -> None:
    """``--lazy``, ``--chunk-size`` and ``--scheduler``, shared by the commands that read counts from disk."""
    from .._io import DEFAULT_CHUNK_SIZE

    parser.add_argument(
        "--lazy",
        action="store_true",
        help=f"read {what} from disk in chunks of cells with dask (.h5ad or .zarr) instead of loading it into memory",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        metavar="CELLS",
        help=f"cells per chunk with --lazy (default: {DEFAULT_CHUNK_SIZE})",
    )
    parser.add_argument(
        "--scheduler",
        help="with --lazy: 'threads' (default), 'processes' (a local dask.distributed cluster) or the "
        "address of a running dask scheduler (tcp://host:8786)",
    )


def resolve_dask_arguments(args) -> None:
    """Fill the dask defaults and check them; ``--chunk-size`` / ``--scheduler`` without ``--lazy`` are errors."""
    from .._io import DEFAULT_CHUNK_SIZE
    from ._cli import InputError

    if not args.lazy:
        given = [
            option
            for option, value in (("--chunk-size", args.chunk_size), ("--scheduler", args.scheduler))
            if value is not None
        ]
        if given:
            raise InputError(f"{' and '.join(given)} only apply with --lazy; add --lazy or drop them")
        return
    args.chunk_size = DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size
    args.scheduler = args.scheduler or "threads"
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be a positive number of cells, got {args.chunk_size}")
    if args.scheduler not in SCHEDULERS and "://" not in args.scheduler and ":" not in args.scheduler:
        raise InputError(
            f"--scheduler must be one of {', '.join(SCHEDULERS)} or a scheduler address (tcp://host:8786), "
            f"got {args.scheduler!r}"
        )


@contextmanager
def dask_scheduler(spec: str, *, progress: bool = True, minimum_seconds: float = 0.0):
    """Run the dask computations of the block on ``spec`` with a progress report over the chunks.

    ``threads`` shows dask's progress bar for every computation longer than ``minimum_seconds``;
    on a distributed scheduler the number of tasks in flight is printed every few seconds.
    """
    import dask

    if spec == "threads":
        from dask.diagnostics import ProgressBar

        with dask.config.set(scheduler="threads"):
            if not progress:
                yield
                return
            with ProgressBar(minimum=minimum_seconds, dt=0.1, out=sys.stderr):
                yield
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(threads_per_worker=1, dashboard_address=None) if spec == "processes" else None
    with Client(cluster or spec) as client:
        print(f"dask: {client}", file=sys.stderr)
        try:
            if progress:
                with _distributed_progress(client):
                    yield
            else:
                yield
        finally:
            if cluster is not None:
                cluster.close()


@contextmanager
def _distributed_progress(client):
    """Print the number of finished tasks every few seconds (the distributed scheduler has no local bar)."""
    import threading

    stop = threading.Event()

    def report() -> None:
        while not stop.wait(5.0):
            counts = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            print(f"dask: {counts} tasks in flight", file=sys.stderr)

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def in_query_species(reference, column: str):
    """``reference`` with its genes renamed through the ``var`` column ``column`` (``--orthologs``)."""
    import warnings

    from ..tl import map_orthologs
    from ._cli_checks import check_ortholog_column

    check_ortholog_column(reference, column, "--reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # several genes with one ortholog: summed
        return map_orthologs(reference, column)


def annotate_command(args) -> int:
    import anndata as ad

    from .. import read_lazy
    from ..tl import transfer_labels
    from ._cli import InputError
    from ._cli_checks import read_anndata

    resolve_dask_arguments(args)
    reference = read_anndata(args.reference, "--reference")
    if args.orthologs is not None:
        reference = in_query_species(reference, args.orthologs)
    if not args.query.exists():
        raise InputError(f"--query {args.query}: no such file")
    try:
        if args.lazy:
            query = read_lazy(args.query, chunk_size=args.chunk_size)
        else:
            query = ad.read_zarr(args.query) if args.query.is_dir() else ad.read_h5ad(args.query)
    except Exception as error:  # h5py, zarr and anndata raise many kinds for a file that is not AnnData
        raise InputError(
            f"--query {args.query} is not a readable AnnData .h5ad file or .zarr store "
            f"({type(error).__name__}: {error})"
        ) from error
    if not reference.var_names.isin(query.var_names).any():
        hint = (
            "for two species pass --orthologs naming the var column of --reference with each gene's ortholog"
        )
        if args.orthologs is not None:
            hint = f"check that --orthologs {args.orthologs!r} names genes in the query's species"
        raise InputError(f"--reference and --query share no gene names; {hint}")
    with dask_scheduler(args.scheduler) if args.lazy else nullcontext():
        transfer_labels(reference, query, labels_key=args.labels, method=args.method)
    key = args.labels
    columns = [f"{key}_pred", f"{key}_confidence"]
    query.obs[columns].to_csv(args.out)
    print(f"wrote {args.out} ({query.n_obs} cells)")
    return 0
