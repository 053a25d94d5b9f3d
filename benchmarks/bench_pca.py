"""Time ``cr.tl.pca`` against scanpy's ARPACK PCA on one synthetic log-normalized sparse matrix.

Usage::

    python benchmarks/bench_pca.py N_CELLS N_GENES NNZ_PER_CELL [--n-comps 50] [--clusters 20]
        [--threads N] [--repeats 1] [--no-memory] [--skip-scanpy]

The data are log-normalized counts (target sum 10⁴, ``log1p``) with exactly
``NNZ_PER_CELL`` distinct genes per cell (float32 data, int32 indices) and a cluster
structure (``--clusters`` cell groups, each with its own gene ranking), so that, as in
real data, a few components stand above a noise floor. Both methods get the same CSR
matrix with implicit centring: scanpy's ``sc.pp.pca(svd_solver='arpack')`` (sklearn's
``PCA`` on a centring ``LinearOperator``) and ``cr.tl.pca``.

Prints both wall times (best of ``--repeats``), their ratio, cellrep's peak memory relative
to the CSR size (tracemalloc, which numpy reports every buffer to, in a separate run; and
the sampled growth of the resident set size, which also sees numba's allocations), and
the agreement of the explained variances (max relative difference over all components).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import threading
import time
import tracemalloc
import warnings

import anndata as ad
import numpy as np
from bench_pp import csr_bytes
from scipy import sparse

RSS_SAMPLE_SECONDS = 0.01


def structured_log_normalized(
    n_cells: int, n_genes: int, nnz_per_cell: int, n_clusters: int, *, seed: int = 0, chunk: int = 5000
):
    """Log-normalized CSR (float32 data, int32 indices) with ``nnz_per_cell`` distinct genes per cell.

    Each cluster ranks the genes its own way (a shared ranking plus cluster noise); a cell
    draws its genes mostly from the top of its cluster's ranking, with counts that fall
    with the rank. As in scRNA-seq, a few components (one per cluster) stand well above a
    noise floor: the top 50 explain ~30 % of the variance (Baron human, log-normalized: ~23 %).
    """
    rng = np.random.default_rng(seed)
    per_cell = min(nnz_per_cell, n_genes)
    shared_ranking = rng.standard_normal(n_genes)
    cluster_rankings = np.argsort(shared_ranking + rng.standard_normal((n_clusters, n_genes)), axis=1).astype(
        np.int32
    )
    clusters = rng.integers(0, n_clusters, size=n_cells)
    indices = np.empty(n_cells * per_cell, dtype=np.int32)
    data = np.empty(n_cells * per_cell, dtype=np.float32)
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        # sorted draws from [0, G - k] plus 0..k-1 are distinct ranks; cubing favours the top
        draws = (rng.random((stop - start, per_cell)) ** 3 * (n_genes - per_cell + 1)).astype(np.int32)
        ranks = np.sort(draws, axis=1) + np.arange(per_cell, dtype=np.int32)
        genes = cluster_rankings[clusters[start:stop, None], ranks]
        counts = 1.0 + rng.poisson(20.0 * np.exp(-ranks / 500.0)).astype(np.float32)
        by_gene = np.argsort(genes, axis=1)
        genes, counts = np.take_along_axis(genes, by_gene, 1), np.take_along_axis(counts, by_gene, 1)
        counts *= 1e4 / counts.sum(axis=1, keepdims=True)
        indices[start * per_cell : stop * per_cell] = genes.ravel()
        data[start * per_cell : stop * per_cell] = np.log1p(counts).ravel()
    indptr = np.arange(0, indices.size + 1, per_cell, dtype=np.int64)
    if indices.size < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def timed(function, make_input, repeats: int) -> tuple[float, object]:
    """Best wall time of ``function(make_input())`` and the last input (holding the results)."""
    best = float("inf")
    for _ in range(repeats):
        argument = make_input()
        gc.collect()
        start = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - start)
    return best, argument


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(function, make_input) -> tuple[int, int]:
    """(tracemalloc peak, sampled RSS growth) of ``function(make_input())``, input excluded."""
    argument = make_input()
    gc.collect()
    baseline = _rss_bytes()
    peak_rss = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_rss[0] = max(peak_rss[0], _rss_bytes())
            time.sleep(RSS_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        function(argument)
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        done.set()
        sampler.join()
    return traced, max(peak_rss[0] - baseline, 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n_cells", type=int)
    parser.add_argument("n_genes", type=int)
    parser.add_argument("nnz_per_cell", type=int)
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--clusters", type=int, default=20, help="cell groups with their own gene rates")
    parser.add_argument("--threads", type=int, default=None, help="cellrep numba thread limit")
    parser.add_argument("--repeats", type=int, default=1, help="timing runs per method (best is kept)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument("--skip-scanpy", action="store_true", help="time cellrep only")
    args = parser.parse_args()

    import scanpy as sc

    import cellrep as cr

    cr.settings.n_threads = args.threads
    warnings.simplefilter("ignore")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    start = time.perf_counter()
    X = structured_log_normalized(args.n_cells, args.n_genes, args.nnz_per_cell, args.clusters)
    size = csr_bytes(X)
    print(
        f"matrix: {X.shape[0]} cells x {X.shape[1]} genes, {X.nnz} nnz ({args.nnz_per_cell}/cell), "
        f"CSR {size / 1e9:.3f} GB (float32 data, int32 indices), {args.clusters} clusters, log-normalized; "
        f"built in {time.perf_counter() - start:.1f} s"
    )

    def make_input() -> ad.AnnData:
        return ad.AnnData(X)  # shares X: neither method modifies it

    def run_cellrep(adata: ad.AnnData) -> None:
        cr.tl.pca(adata, n_comps=args.n_comps)

    def run_scanpy(adata: ad.AnnData) -> None:
        sc.pp.pca(adata, n_comps=args.n_comps, svd_solver="arpack", random_state=0)

    cr.tl.pca(ad.AnnData(X[:200]), n_comps=10)  # compile the numba kernels before timing
    ours_time, ours = timed(run_cellrep, make_input, args.repeats)
    print(f"cellrep cr.tl.pca:                  {ours_time:8.2f} s", flush=True)
    if not args.skip_scanpy:
        peer_time, peer = timed(run_scanpy, make_input, args.repeats)
        print(f"scanpy sc.pp.pca(svd_solver=arpack): {peer_time:8.2f} s", flush=True)
        print(f"speed-up (scanpy / cellrep):        {peer_time / ours_time:8.2f} x")
        ours_variance, peer_variance = ours.uns["pca"]["variance"], peer.uns["pca"]["variance"]
        relative = np.abs(ours_variance / peer_variance - 1)
        print(
            f"explained variance vs scanpy: max relative difference {relative.max():.2e} "
            f"(component {relative.argmax() + 1}), mean {relative.mean():.2e}; "
            f"variance ratio sums {ours.uns['pca']['variance_ratio'].sum():.4f} vs "
            f"{peer.uns['pca']['variance_ratio'].sum():.4f}"
        )
    if not args.no_memory:
        traced, rss_growth = peak_memory(run_cellrep, make_input)
        print(
            f"cellrep peak memory: tracemalloc {traced / 1e9:.3f} GB = {traced / size:.2f} x CSR; "
            f"RSS growth {rss_growth / 1e9:.3f} GB = {rss_growth / size:.2f} x CSR (target < 2 x)"
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
