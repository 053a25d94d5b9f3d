"""cellrep vs scanpy on dask: the same lazily read count file, the same LocalCluster.

Usage::

    python benchmarks/bench_dask.py N_CELLS [--n-genes 20000] [--nnz-per-cell 500] [--groups 20]
        [--chunk-size 10000] [--n-top 2000] [--n-comps 50] [--scheduler ADDRESS]
        [--workers 2] [--memory-limit 3GB] [--path DIR] [--subset 100000] [--skip-scanpy]
        [--skip-transfer] [--transfer-without-persist] [--transfer-in-memory] [--order cellrep,scanpy] [--cold]

1. Writes a synthetic count matrix (``synthetic_counts.py``: ``--groups`` cell types with their
   own marker genes, ``--nnz-per-cell`` reads per cell, float32 CSR) to a zarr store, chunk by
   chunk (reused when it exists with the same shape).
2. Starts ``LocalCluster(n_workers=--workers, threads_per_worker=1, memory_limit=--memory-limit)``
   (or connects to ``--scheduler``, the address of a running scheduler: dask-jobqueue,
   Kubernetes; nothing else changes).
3. Runs, with the counts read lazily (``cr.read_lazy``, ``--chunk-size`` cells per chunk):

   - cellrep: ``log_normalize`` → ``select_genes(method='hvg', flavor='seurat')`` → the selected
     genes persisted on the workers → ``tl.pca`` with the scores computed (the default solver,
     then ``'krylov'`` and ``'covariance_eigh'`` timed outside the total unless
     ``--skip-other-solvers``) → ``transfer_labels`` of the second half of the cells from the
     first (its own embedding of the reference half and projection of the query half). With
     ``--order cellrep`` the counts are first read once and held (``cr.persist_counts``), and
     every later step reads them from memory; ``cellrep_file`` reads the file in every pass;
   - scanpy: ``normalize_total`` → ``log1p`` → ``highly_variable_genes(flavor='seurat')`` → the
     same persist → ``pp.pca(svd_solver='covariance_eigh')`` with the scores computed;
     ``scanpy_held`` first persists ``X`` (float32 CSR) on the workers, what a scanpy user can do
     when it fits.

   Before each pipeline the workers are restarted and warmed up on 2000 cells (imports and numba
   caches, as the CLI does before its timed fits; ``--cold`` times them cold). ``--order`` runs
   the pipelines several times (``cellrep,scanpy,scanpy,cellrep`` evens out a changing load).

4. First compares the PCA variances of the dask run with the in-memory ``cr.tl.pca`` on the
   first ``--subset`` cells; then prints the wall time of every step, the end-to-end ratio (the
   steps both run) and the peak resident memory of every worker (sampled every 0.2 s). For every
   step it also prints the chunks read from the store (in passes over the file) and the workers'
   seconds spent reading (decompressing) vs computing.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

SAMPLE_SECONDS = 0.2


def _worker_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakWorkerMemory:
    """Peak resident set size of every worker, sampled in a background thread."""

    def __init__(self, client) -> None:
        self.client, self.peaks, self._stop = client, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                for worker, rss in self.client.run(_worker_rss).items():
                    self.peaks[worker] = max(self.peaks.get(worker, 0), rss)
            except Exception:  # a worker restarting: keep sampling the others
                pass
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def install_read_counter() -> None:
    """In a worker: count and time anndata's reads of one chunk of a lazily read matrix.

    dask fuses the read into the task that uses the chunk (``normalize_block``, ...), so the
    task stream cannot tell reading from computing; this wrapper can.
    """
    from anndata._io.specs import lazy_methods

    read_chunk = getattr(lazy_methods.make_dask_chunk, "__wrapped__", lazy_methods.make_dask_chunk)
    # kept in the worker's module (functions of this script are sent by value, with their globals)
    counter = lazy_methods.bench_dask_reads = [0, 0.0]

    def counted(*args, **kwargs):
        start = time.perf_counter()
        try:
            return read_chunk(*args, **kwargs)
        finally:
            counter[0] += 1
            counter[1] += time.perf_counter() - start

    counted.__wrapped__ = read_chunk
    lazy_methods.make_dask_chunk = counted


def _read_counter() -> tuple[int, float]:
    from anndata._io.specs import lazy_methods

    return tuple(getattr(lazy_methods, "bench_dask_reads", (0, 0.0)))


def _reads(client) -> tuple[int, float]:
    counters = client.run(_read_counter).values()
    return sum(count for count, _ in counters), sum(seconds for _, seconds in counters)


def _compute_seconds(tasks: list[dict]) -> float:
    return sum(
        part["stop"] - part["start"]
        for task in tasks
        for part in task["startstops"]
        if part["action"] == "compute"
    )


PERSIST_COUNTS = "persist_counts (the one read)"
HELD_X = "X persisted (float32 CSR, the one read)"
CELLREP_PIPELINE = (
    PERSIST_COUNTS,
    "log_normalize (lazy)",
    "select_genes(hvg, seurat)",
    "persist selected genes",
    "pca (auto: covariance_krylov) + scores",
)
SCANPY_PIPELINE = (
    HELD_X,
    "normalize_total + log1p (lazy)",
    "highly_variable_genes(seurat)",
    "persist selected genes",
    "pca (covariance_eigh) + scores",
)
N_CHUNKS = {"file": None}  # chunks of the whole file, set by main()
QUIET = {"on": False}  # during the warm-up
WARM_UP_CELLS = 2000


def timed(times: dict, name: str, func):
    """Run ``func``; print its wall time, the chunks read (passes over the file) and the workers' time reading vs computing."""
    from distributed import get_client, get_task_stream

    client = get_client()
    reads_before, read_seconds_before = _reads(client)
    start = time.perf_counter()
    with get_task_stream() as stream:
        result = func()
    times[name] = time.perf_counter() - start
    reads_after, read_seconds_after = _reads(client)
    reads, read_seconds = reads_after - reads_before, read_seconds_after - read_seconds_before
    compute = _compute_seconds(stream.data) - read_seconds
    passes = reads / N_CHUNKS["file"] if N_CHUNKS["file"] else float("nan")
    if QUIET["on"]:
        return result
    print(
        f"  {name:<38} {times[name]:8.1f} s | {reads:4d} chunk reads ({passes:4.1f} × the file), "
        f"workers: read {read_seconds:6.1f} s, compute {compute:6.1f} s",
        flush=True,
    )
    return result


def write_counts(path: Path, args) -> None:
    from synthetic_counts import synthetic_counts

    marker = path / ".complete"
    expected = f"{args.n_cells} {args.n_genes} {args.nnz_per_cell} {args.groups}"
    if marker.exists() and marker.read_text() == expected:
        print(f"reusing {path}")
        return
    start = time.perf_counter()
    adata = synthetic_counts(
        args.n_cells,
        args.n_genes,
        nnz_per_cell=args.nnz_per_cell,
        n_groups=args.groups,
        chunk_size=args.chunk_size,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_zarr(path)
    marker.write_text(expected)
    size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    print(f"wrote {path} ({size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")


def _persist_selected(adata, mask, client):
    from distributed import wait

    subset = adata[:, mask].copy()
    subset.X = subset.X.persist()
    wait(subset.X)
    return subset


def _computed_scores(adata, key="X_pca"):
    from distributed import wait

    adata.obsm[key] = adata.obsm[key].persist() if hasattr(adata.obsm[key], "persist") else adata.obsm[key]
    if hasattr(adata.obsm[key], "dask"):
        wait(adata.obsm[key])
    return adata


def _lazy(path: Path, args, warm_up: bool):
    """The counts read lazily; for the warm-up the first ``WARM_UP_CELLS`` cells in two chunks."""
    import cellrep as cr

    if not warm_up:
        return cr.read_lazy(path, chunk_size=args.chunk_size)
    return cr.read_lazy(path, chunk_size=WARM_UP_CELLS // 2)[:WARM_UP_CELLS].copy()


def transfer_in_memory(path: Path) -> None:
    """The same transfer (second half from the first, defaults) with both halves loaded into this process."""
    import cellrep as cr

    start = time.perf_counter()
    counts = cr.read_lazy(path, chunk_size=50_000)
    half = counts.n_obs // 2
    ref, query = counts[:half].copy(), counts[half:].copy()
    ref.X, query.X = ref.X.compute(), query.X.compute()
    loaded = time.perf_counter()
    cr.tl.transfer_labels(ref, query, labels_key="group")
    truth = query.obs["group"].astype(str).to_numpy()
    predicted = query.obs["group_pred"].astype(str).to_numpy()
    accuracy = np.mean(predicted == truth)
    print(f"  {np.mean(predicted == 'unknown'):.1%} called unknown")
    print(
        f"transfer_labels in memory: loading {loaded - start:.0f} s, transfer {time.perf_counter() - loaded:.0f} s, "
        f"accuracy {accuracy:.4f}",
        flush=True,
    )


def _persisted_x(adata):
    from distributed import wait

    adata.X = adata.X.persist()
    wait(adata.X)
    return adata


def run_cellrep(
    path: Path, args, client, warm_up: bool = False, persist_counts: bool = True
) -> tuple[dict, np.ndarray]:
    import cellrep as cr
    from cellrep._array import _dask_blocks as blocks

    times = {}
    adata = _lazy(path, args, warm_up)
    counts = None
    if persist_counts:
        timed(times, PERSIST_COUNTS, lambda: cr.persist_counts(adata))
        counts = adata.copy()  # the held counts, for the transfer below
        if not QUIET["on"]:
            print(f"  counts held: {adata.uns['persist_counts']['bytes_held'] / 2**30:.2f} GiB")
    timed(times, "log_normalize (lazy)", lambda: cr.pp.log_normalize(adata))
    timed(
        times,
        "select_genes(hvg, seurat)",
        lambda: cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=args.n_top),
    )
    selected = timed(
        times,
        "persist selected genes",
        lambda: _persist_selected(adata, adata.var["selected"].to_numpy(), client),
    )

    def pca(solver):
        cr.tl.pca(selected, n_comps=args.n_comps, solver=solver)
        return _computed_scores(selected)

    timed(times, "pca (auto: covariance_krylov) + scores", lambda: pca("auto"))
    variance = np.asarray(selected.uns["pca"]["variance"])
    if not args.skip_other_solvers:  # the other solvers on the same persisted genes (not in the total)
        timed(times, "pca (krylov) + scores", lambda: pca("krylov"))
        timed(times, "pca (covariance_eigh) + scores", lambda: pca("covariance_eigh"))
    selected.X = None  # free the persisted genes on the workers
    if args.skip_transfer:
        return times, variance
    variants = [("transfer_labels (2nd half from 1st)", blocks.PERSIST_MEMORY_FRACTION)]
    if args.transfer_without_persist:  # the reference read again by every pass, as before it was persisted
        variants.insert(0, ("transfer_labels, reference not persisted", 0.0))
    default_fraction = blocks.PERSIST_MEMORY_FRACTION
    for name, fraction in variants:
        counts = counts if persist_counts else _lazy(path, args, warm_up)
        half = counts.n_obs // 2
        ref, query = counts[:half].copy(), counts[half:].copy()
        blocks.PERSIST_MEMORY_FRACTION = fraction
        try:
            timed(times, name, partial(cr.tl.transfer_labels, ref, query, labels_key="group"))
        finally:
            blocks.PERSIST_MEMORY_FRACTION = default_fraction
        truth = query.obs["group"].astype(str).to_numpy()
        predicted = query.obs["group_pred"].astype(str).to_numpy()
        accuracy = float(np.mean(predicted == truth))
        called = predicted != "unknown"
        if not QUIET["on"]:
            print(
                f"  transfer accuracy on the held-out half: {accuracy:.4f} ({1 - called.mean():.1%} called unknown; "
                f"{np.mean(predicted[called] == truth[called]):.4f} of the others right)"
            )
    return times, variance


def run_scanpy(path: Path, args, client, warm_up: bool = False, persist_x: bool = False) -> dict:
    import scanpy as sc

    times = {}
    adata = _lazy(path, args, warm_up)
    if persist_x:  # what a scanpy user can do when the float32 CSR fits in the workers' memory
        timed(times, HELD_X, lambda: _persisted_x(adata))
    timed(
        times,
        "normalize_total + log1p (lazy)",
        lambda: (sc.pp.normalize_total(adata, target_sum=1e4), sc.pp.log1p(adata)),
    )
    timed(
        times,
        "highly_variable_genes(seurat)",
        lambda: sc.pp.highly_variable_genes(adata, n_top_genes=args.n_top, flavor="seurat"),
    )
    selected = timed(
        times,
        "persist selected genes",
        lambda: _persist_selected(adata, adata.var["highly_variable"].to_numpy(), client),
    )

    def pca():
        sc.pp.pca(selected, n_comps=args.n_comps, svd_solver="covariance_eigh")
        return _computed_scores(selected)

    timed(times, "pca (covariance_eigh) + scores", pca)
    return times


def in_memory_variances(path: Path, args) -> np.ndarray:
    """cellrep's PCA variances of the first ``--subset`` cells, loaded into memory."""
    import cellrep as cr

    adata = cr.read_lazy(path, chunk_size=args.chunk_size)[: args.subset].copy()
    lazy = adata.copy()
    adata.X = adata.X.compute()
    for data in (adata, lazy):
        cr.pp.log_normalize(data)
        cr.pp.select_genes(data, method="hvg", flavor="seurat", n_top=args.n_top)
    assert (adata.var["selected"] == lazy.var["selected"]).all(), "HVG selection differs"
    results = []
    for data in (adata, lazy):
        selected = data[:, data.var["selected"].to_numpy()].copy()
        cr.tl.pca(selected, n_comps=args.n_comps)
        results.append(np.asarray(selected.uns["pca"]["variance"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n_cells", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--n-genes", type=int, default=20_000)
    parser.add_argument("--nnz-per-cell", type=int, default=500)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--n-top", type=int, default=2000)
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--scheduler", default=None, help="address of a running dask scheduler")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB")
    parser.add_argument("--path", type=Path, default=Path("/tmp/cellrep_bench_dask"))
    parser.add_argument("--subset", type=int, default=100_000)
    parser.add_argument("--skip-scanpy", action="store_true")
    parser.add_argument("--skip-cellrep", action="store_true")
    parser.add_argument(
        "--skip-transfer", action="store_true", help="leave out cellrep's transfer_labels step"
    )
    parser.add_argument(
        "--skip-other-solvers",
        action="store_true",
        help="time only cellrep's default PCA solver (not also 'krylov' and 'covariance_eigh')",
    )
    parser.add_argument(
        "--order",
        default="cellrep,scanpy",
        help="pipelines in the order they run, e.g. cellrep,scanpy,scanpy,cellrep (the ratio uses the mean "
        "of each; cellrep's transfer runs once). cellrep reads the file once (cr.persist_counts), "
        "cellrep_file reads it in every pass; scanpy reads it in every pass, scanpy_held persists X "
        "(float32 CSR) first",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="time the pipelines on cold workers (no warm-up: imports and numba caches are loaded in the first step)",
    )
    parser.add_argument(
        "--transfer-in-memory",
        action="store_true",
        help="first run the transfer with both halves loaded into this process (no dask), for its accuracy",
    )
    parser.add_argument(
        "--transfer-without-persist",
        action="store_true",
        help="also run transfer_labels with nothing persisted (every pass reads the reference again)",
    )
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    args.path.mkdir(parents=True, exist_ok=True)
    store = args.path / f"counts_{args.n_cells}x{args.n_genes}x{args.nnz_per_cell}.zarr"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    write_counts(store, args)
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        )
        client = Client(cluster)
    print(f"cluster: {client}")
    args.subset = min(args.subset, args.n_cells)
    N_CHUNKS["file"] = -(-args.n_cells // args.chunk_size)
    if args.transfer_in_memory:
        transfer_in_memory(store)
    if args.subset > 0:
        expected, lazy = in_memory_variances(store, args)
        print(
            f"PCA variances, first {args.subset} cells, dask vs in memory: max relative difference "
            f"{np.max(np.abs(lazy / expected - 1)):.2e}",
            flush=True,
        )
    warnings.filterwarnings("ignore", category=UserWarning)
    runners = {
        "cellrep": run_cellrep,
        "cellrep_file": partial(run_cellrep, persist_counts=False),
        "scanpy": run_scanpy,
        "scanpy_held": partial(run_scanpy, persist_x=True),
    }
    order = [name for name in args.order.split(",") if not getattr(args, f"skip_{name.split('_')[0]}")]
    transfer_done = False
    totals: dict[str, list[float]] = {name: [] for name in runners}
    for name in order:
        print(f"{name}:", flush=True)
        client.restart()
        client.run(install_read_counter)
        skip_transfer = args.skip_transfer
        args.skip_transfer = skip_transfer or transfer_done  # the transfer runs once
        if not args.cold:  # imports and numba caches loaded in every worker, outside the timed steps
            start, QUIET["on"] = time.perf_counter(), True
            runners[name](store, args, client, warm_up=True)
            QUIET["on"] = False
            print(
                f"  warm-up on {WARM_UP_CELLS} cells (imports, numba caches): {time.perf_counter() - start:.1f} s"
            )
        with PeakWorkerMemory(client) as memory:
            output = runners[name](store, args, client)
        transfer_done = transfer_done or name.startswith("cellrep")
        args.skip_transfer = skip_transfer
        times = output[0] if name.startswith("cellrep") else output
        peak = max(memory.peaks.values()) / 2**30 if memory.peaks else float("nan")
        print(f"  peak worker memory {peak:.2f} GiB (limit {args.memory_limit})")
        steps = [step for step in (CELLREP_PIPELINE if name.startswith("cellrep") else SCANPY_PIPELINE) if step in times]
        totals[name].append(sum(times[key] for key in steps))
        print(f"  end to end ({', '.join(steps)}): {totals[name][-1]:.1f} s", flush=True)

    means = {name: np.mean(values) for name, values in totals.items() if values}
    print("end to end (mean of the runs of each): " + ", ".join(f"{name} {mean:.1f} s" for name, mean in means.items()))
    for cellrep_name in ("cellrep", "cellrep_file"):
        for scanpy_name in ("scanpy", "scanpy_held"):
            if cellrep_name in means and scanpy_name in means:
                print(f"  ratio {scanpy_name} / {cellrep_name} = {means[scanpy_name] / means[cellrep_name]:.2f}")
    client.close()


if __name__ == "__main__":
    main()
