"""Where the workers' time goes in cellrep's dask pipeline: seconds per task kind, computing vs moving data.

Usage::

    python benchmarks/profile_dask_tasks.py STORE [--chunk-size 10000] [--workers 2]

``STORE`` is a zarr store written by ``bench_dask.py``. First, in this process on one thread,
the distinct log levels per cell and the best of 5 timings of the seurat HVG moments (``batch_moments`` with and without un-logging)
on the first chunk, log-normalized. Then, on a ``LocalCluster`` (``--workers`` × 1 thread, 3 GB),
cellrep's pipeline runs twice (``persist_counts`` → ``log_normalize`` → ``select_genes(hvg,
seurat)`` → persist of the selected genes → ``tl.pca``); for the second, warm run every step
prints the tasks of ``distributed.get_task_stream`` grouped by name: count, total seconds and
seconds per task, for computing and for transfers between workers.
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings


def kernel_timings(store: str, chunk_size: int) -> None:
    import numpy as np

    import cellrep as cr
    from cellrep._array._hvg import batch_moments
    from cellrep._array._normalize import normalize_rows
    from cellrep._settings import numba_threads

    counts = cr.read_lazy(store, chunk_size=chunk_size).X.blocks[0].compute()
    logged = normalize_rows(counts, target_sum=1e4, log=True, copy=True)[0]
    batches = np.zeros(logged.shape[0], dtype=np.int64)
    rows = [logged.data[logged.indptr[i] : logged.indptr[i + 1]] for i in range(logged.shape[0])]
    print(
        f"per cell: {np.mean([np.unique(row).size for row in rows]):.1f} distinct log levels in "
        f"{np.mean([np.count_nonzero(np.diff(row)) + 1 for row in rows if row.size]):.1f} runs of "
        f"{logged.nnz / logged.shape[0]:.0f} stored values"
    )
    with numba_threads(1):
        for scale in (1.0, 0.0):
            batch_moments(logged, batches, 1, expm1_scale=scale)
            best = min(
                _seconds(lambda scale=scale: batch_moments(logged, batches, 1, expm1_scale=scale))
                for _ in range(5)
            )
            print(f"HVG moments of one chunk ({logged.nnz} values), expm1_scale={scale}: {best * 1e3:.1f} ms")


def _seconds(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def by_task(stream, label: str, show: bool) -> None:
    totals = collections.defaultdict(lambda: [0, 0.0])
    for task in stream:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        name = key.rsplit("-", 1)[0] if isinstance(key, str) else str(key)
        for part in task["startstops"]:
            entry = totals[(name, part["action"])]
            entry[0] += 1
            entry[1] += part["stop"] - part["start"]
    if not show:
        return
    print(f"--- {label}")
    for (name, action), (count, seconds) in sorted(totals.items(), key=lambda item: -item[1][1]):
        if seconds > 0.01:
            print(
                f"   {name[:45]:45s} {action:9s} {count:4d} tasks {seconds:7.2f} s ({seconds / count * 1e3:.1f} ms each)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from distributed import Client, LocalCluster, get_task_stream, wait

    import cellrep as cr

    kernel_timings(args.store, args.chunk_size)
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, memory_limit="3GB", dashboard_address=None
    )
    client = Client(cluster)
    for run in range(2):  # the first run loads imports and numba caches on the workers
        show = run == 1
        adata = cr.read_lazy(args.store, chunk_size=args.chunk_size)
        selected = {}

        def persist_selected(adata=adata, selected=selected):
            subset = adata[:, adata.var["selected"].to_numpy()].copy()
            subset.X = subset.X.persist()
            wait(subset.X)
            selected["adata"] = subset

        def pca(selected=selected):
            subset = selected["adata"]
            cr.tl.pca(subset, n_comps=50)
            subset.obsm["X_pca"] = subset.obsm["X_pca"].persist()
            wait(subset.obsm["X_pca"])

        steps = [
            ("persist_counts", lambda adata=adata: cr.persist_counts(adata)),
            ("log_normalize", lambda adata=adata: cr.pp.log_normalize(adata)),
            (
                "select_genes(hvg, seurat)",
                lambda adata=adata: cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=2000),
            ),
            ("persist selected genes", persist_selected),
            ("pca + scores", pca),
        ]
        for label, step in steps:
            with get_task_stream() as stream:
                seconds = _seconds(step)
            if show:
                print(f"{label}: {seconds:.2f} s")
            by_task(stream.data, label, show)
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
