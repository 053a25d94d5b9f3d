"""Time ``cr.tl.linear_embedding`` end to end against scanpy's standard pipeline on synthetic counts.

Usage::

    python benchmarks/bench_linear.py N_CELLS N_GENES NNZ_PER_CELL [--n-genes 2000] [--n-comps 50]
        [--normalizations log rank_probit pearson] [--no-peer] [--memory] [--transfer]

cellrep: normalization → ANOVA gene selection (10 random labels) → standardization → PCA,
plus ``cr.tl.project`` of the same cells (the query path); then the embedding that
``cr.tl.transfer_labels`` uses by default (HVG genes, clipped at ±4, not whitened) and, with
``--transfer``, ``cr.tl.transfer_labels`` end to end (embedding, projection of the same cells
as the query, logistic regression fit and prediction). The peer is scanpy's standard
pipeline to the same point: ``normalize_total`` 1e4, ``log1p``, ``highly_variable_genes``
(n_genes), subset, ``scale``, ``pca`` (n_comps). Prints wall times, the ratio (scanpy /
cellrep) and, with ``--memory``, the tracemalloc peak of each cellrep run relative to the
CSR size (a second, traced run). Numba kernels are compiled on a tiny matrix first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pp import csr_bytes, make_adata, synthetic_csr

N_LABELS = 10


def cellrep_pipeline(adata, normalization: str, n_genes: int, n_comps: int) -> None:
    import cellrep as cr

    cr.tl.linear_embedding(
        adata, labels_key="label", normalization=normalization, n_genes=n_genes, n_comps=n_comps
    )


def cellrep_transfer_embedding(adata, n_genes: int, n_comps: int) -> None:
    import cellrep as cr
    from cellrep.tl._transfer import DEFAULT_LINEAR_KWARGS

    cr.tl.linear_embedding(
        adata, labels_key="label", n_genes=n_genes, n_comps=n_comps, **DEFAULT_LINEAR_KWARGS
    )


def cellrep_transfer(adata, n_genes: int, n_comps: int) -> None:
    import cellrep as cr

    query = adata.copy()
    del query.obs["label"]
    cr.tl.transfer_labels(
        adata, query, labels_key="label", linear_kwargs={"n_genes": n_genes, "n_comps": n_comps}
    )


def cellrep_project(adata) -> None:
    import cellrep as cr

    cr.tl.project(adata, adata, key_added="X_projected")


def scanpy_pipeline(adata, n_genes: int, n_comps: int) -> None:
    import scanpy as sc

    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_genes)
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    sc.pp.scale(adata, max_value=10)
    sc.pp.pca(adata, n_comps=n_comps)


def clock(function, *arguments) -> float:
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


def traced_peak(function, *arguments) -> int:
    tracemalloc.start()
    try:
        function(*arguments)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_cells", type=int)
    parser.add_argument("n_genes_total", type=int, metavar="N_GENES")
    parser.add_argument("nnz_per_cell", type=int, metavar="NNZ_PER_CELL")
    parser.add_argument("--n-genes", type=int, default=2000, help="genes selected")
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--normalizations", nargs="+", default=["log", "rank_probit", "pearson"])
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--memory", action="store_true", help="also measure tracemalloc peaks (extra runs)")
    parser.add_argument("--transfer", action="store_true", help="also time cr.tl.transfer_labels end to end")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load {os.getloadavg()}"
    )
    start = time.perf_counter()
    matrix = synthetic_csr(args.n_cells, args.n_genes_total, args.nnz_per_cell)
    labels = np.random.default_rng(0).integers(0, N_LABELS, size=args.n_cells).astype(str)
    print(
        f"data: {args.n_cells} × {args.n_genes_total}, {args.nnz_per_cell} nnz/cell, CSR {csr_bytes(matrix) / 2**20:.0f} MiB "
        f"(built in {time.perf_counter() - start:.1f} s)"
    )

    warm = make_adata(synthetic_csr(200, 300, 30, seed=1), labels[:200])
    for normalization in args.normalizations:
        cellrep_pipeline(warm, normalization, 50, 5)
        cellrep_project(warm)
    cellrep_transfer(warm, 50, 5)

    rows = []
    for normalization in args.normalizations:
        adata = make_adata(matrix, labels)
        fit = clock(cellrep_pipeline, adata, normalization, args.n_genes, args.n_comps)
        projection = clock(cellrep_project, adata)
        peak = (
            traced_peak(
                cellrep_pipeline, make_adata(matrix, labels), normalization, args.n_genes, args.n_comps
            )
            if args.memory
            else None
        )
        rows.append((normalization, fit, projection, peak))
        memory = (
            "" if peak is None else f", peak {peak / 2**20:.0f} MiB = {peak / csr_bytes(matrix):.2f}× CSR"
        )
        print(
            f"cellrep linear_embedding[{normalization}]: {fit:.1f} s; project: {projection:.1f} s{memory}",
            flush=True,
        )

    adata = make_adata(matrix, labels)
    fit = clock(cellrep_transfer_embedding, adata, args.n_genes, args.n_comps)
    projection = clock(cellrep_project, adata)
    print(
        f"cellrep linear_embedding[transfer_labels defaults: log, hvg, clip ±4]: {fit:.1f} s; project: {projection:.1f} s",
        flush=True,
    )
    if args.transfer:
        elapsed = clock(cellrep_transfer, make_adata(matrix, labels), args.n_genes, args.n_comps)
        print(
            f"cellrep transfer_labels end to end (defaults, query = the same cells): {elapsed:.1f} s",
            flush=True,
        )

    if not args.no_peer:
        peer = clock(scanpy_pipeline, make_adata(matrix.copy(), labels), args.n_genes, args.n_comps)
        print(f"scanpy standard pipeline (normalize, log1p, HVG, scale, PCA): {peer:.1f} s")
        for normalization, fit, _, _ in rows:
            print(f"  ratio scanpy / cellrep[{normalization}]: {peer / fit:.2f}×")


if __name__ == "__main__":
    main()
