"""cellrep vs scanpy on dask: the same lazily read count file, the same LocalCluster.

Usage::

    python benchmarks/bench_dask.py N_CELLS [--n-genes 20000] [--nnz-per-cell 500] [--groups 20]
        [--chunk-size 10000] [--n-top 2000] [--n-comps 50] [--scheduler ADDRESS]
        [--workers 2] [--memory-limit 3GB] [--path DIR] [--subset 100000] [--skip-scanpy]

1. Writes a synthetic count matrix (``synthetic_counts.py``: ``--groups`` cell types with their
   own marker genes, ``--nnz-per-cell`` reads per cell, float32 CSR) to a zarr store, chunk by
   chunk (reused when it exists with the same shape).
2. Starts ``LocalCluster(n_workers=--workers, threads_per_worker=1, memory_limit=--memory-limit)``
   (or connects to ``--scheduler``, the address of a running scheduler: dask-jobqueue,
   Kubernetes; nothing else changes).
3. Runs, with the counts read lazily (``cr.read_lazy``, ``--chunk-size`` cells per chunk):

   - cellrep: ``log_normalize`` → ``select_genes(method='hvg', flavor='seurat')`` → the selected
     genes persisted on the workers → ``tl.pca`` with the scores computed (block Krylov, then the
     Gram-matrix solver, both timed) → ``transfer_labels`` of the second half of the cells from the
     first (its own embedding of the reference half and projection of the query half);
   - scanpy: ``normalize_total`` → ``log1p`` → ``highly_variable_genes(flavor='seurat')`` → the
     same persist → ``pp.pca(svd_solver='covariance_eigh')`` with the scores computed.

4. First compares the PCA variances of the dask run with the in-memory ``cr.tl.pca`` on the
   first ``--subset`` cells; then prints the wall time of every step, the end-to-end ratio (the
   steps both run) and the peak resident memory of every worker (sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
import warnings
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


def timed(times: dict, name: str, func):
    start = time.perf_counter()
    result = func()
    times[name] = time.perf_counter() - start
    print(f"  {name:<38} {times[name]:8.1f} s", flush=True)
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


def run_cellrep(path: Path, args, client) -> tuple[dict, np.ndarray]:
    import cellrep as cr

    times = {}
    adata = cr.read_lazy(path, chunk_size=args.chunk_size)
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

    timed(times, "pca (krylov) + scores", lambda: pca("krylov"))
    timed(times, "pca (covariance_eigh) + scores", lambda: pca("covariance_eigh"))
    variance = np.asarray(selected.uns["pca"]["variance"])
    selected.X = None  # free the persisted genes on the workers
    if args.skip_transfer:
        return times, variance
    counts = cr.read_lazy(path, chunk_size=args.chunk_size)
    half = counts.n_obs // 2
    ref, query = counts[:half].copy(), counts[half:].copy()
    timed(
        times,
        "transfer_labels (2nd half from 1st)",
        lambda: cr.tl.transfer_labels(ref, query, labels_key="group"),
    )
    accuracy = float(
        np.mean(query.obs["group_pred"].astype(str).to_numpy() == query.obs["group"].astype(str).to_numpy())
    )
    print(f"  transfer accuracy on the held-out half: {accuracy:.4f}")
    return times, variance


def run_scanpy(path: Path, args, client) -> dict:
    import scanpy as sc

    import cellrep as cr

    times = {}
    adata = cr.read_lazy(path, chunk_size=args.chunk_size)
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
    if args.subset > 0:
        expected, lazy = in_memory_variances(store, args)
        print(
            f"PCA variances, first {args.subset} cells, dask vs in memory: max relative difference "
            f"{np.max(np.abs(lazy / expected - 1)):.2e}",
            flush=True,
        )
    warnings.filterwarnings("ignore", category=UserWarning)
    results = {}
    for name, runner in (("cellrep", run_cellrep), ("scanpy", run_scanpy)):
        if (name == "scanpy" and args.skip_scanpy) or (name == "cellrep" and args.skip_cellrep):
            continue
        print(f"{name}:", flush=True)
        client.restart()
        with PeakWorkerMemory(client) as memory:
            output = runner(store, args, client)
        times = output[0] if name == "cellrep" else output
        peak = max(memory.peaks.values()) / 2**30 if memory.peaks else float("nan")
        print(f"  peak worker memory {peak:.2f} GiB (limit {args.memory_limit})")
        results[name] = (times, peak)

    common = ("normalize", "hvg", "persist", "pca")
    if "scanpy" in results and "cellrep" in results:
        cellrep_total = sum(
            results["cellrep"][0][key]
            for key in (
                "log_normalize (lazy)",
                "select_genes(hvg, seurat)",
                "persist selected genes",
                "pca (krylov) + scores",
            )
        )
        scanpy_total = sum(results["scanpy"][0].values())
        print(
            f"end to end ({', '.join(common)}): cellrep {cellrep_total:.1f} s, scanpy {scanpy_total:.1f} s, "
            f"ratio scanpy / cellrep = {scanpy_total / cellrep_total:.2f}"
        )
    client.close()


if __name__ == "__main__":
    main()
