"""Time cellrep's ``pp`` functions against their peers on one synthetic sparse count matrix.

Usage::

    python benchmarks/bench_pp.py N_CELLS N_GENES NNZ_PER_CELL [--sctop-cells 200]
        [--pearson-cells 5000] [--anova-cells 20000] [--threads N] [--repeats 3]
        [--functions log_normalize rank_probit ...] [--no-memory]

Prints, per function, the wall time of cellrep and of its peer (scanpy, sctop, sklearn),
their ratio (peer / cellrep), cellrep's time relative to one copy of the CSR data array
(the floor for any transform that writes its output), and the peak memory each allocates
(tracemalloc, which numpy reports its buffers to; measured in a separate run) relative to
the size of the CSR matrix. A second table gives cellrep's peak memory on the same matrix
as CSC. Numba kernels are compiled on a tiny matrix before timing.

Both sides are timed the same way: each run gets a fresh AnnData holding its own copy of
the float32 CSR counts (preparation not timed) and the call transforms it as it would in a
notebook. cellrep and scanpy both update float32 data in place (``normalize_total``,
``log1p``, ``log_normalize``, ``scale``), so no side pays for an output copy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse


def synthetic_csr(n_cells: int, n_genes: int, nnz_per_cell: int, *, seed: int = 0, chunk: int = 5000):
    """CSR counts, float32 data and int32 indices, exactly ``nnz_per_cell`` distinct genes per cell."""
    rng = np.random.default_rng(seed)
    nnz_per_cell = min(nnz_per_cell, n_genes)
    indices = np.empty(n_cells * nnz_per_cell, dtype=np.int32)
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        # sorted draws with replacement from [0, G - k] plus 0..k-1 are distinct sorted genes
        draws = np.sort(
            rng.integers(0, n_genes - nnz_per_cell + 1, size=(stop - start, nnz_per_cell), dtype=np.int32)
        )
        draws += np.arange(nnz_per_cell, dtype=np.int32)
        indices[start * nnz_per_cell : stop * nnz_per_cell] = draws.ravel()
    data = rng.geometric(0.4, size=indices.size).astype(np.float32)
    indptr = np.arange(0, indices.size + 1, nnz_per_cell, dtype=np.int64)
    if indices.size < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def csr_bytes(matrix) -> int:
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def make_adata(matrix, labels: np.ndarray | None = None) -> ad.AnnData:
    adata = ad.AnnData(matrix)
    if labels is not None:
        adata.obs["label"] = pd.Categorical(labels)
    return adata


def timed(function, make_input, repeats: int = 1) -> float:
    """Best wall time of ``function(make_input())`` over ``repeats`` runs, input preparation excluded."""
    times = []
    for _ in range(repeats):
        argument = make_input()
        gc.collect()
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
        del argument
        gc.collect()
    return min(times)


def peak_bytes(function, make_input) -> int:
    """Peak bytes traced while running ``function(make_input())`` (input excluded)."""
    argument = make_input()
    gc.collect()
    tracemalloc.start()
    try:
        function(argument)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del argument
    gc.collect()
    return peak


def run_rank_probit(adata):
    import cellrep as cr

    return cr.pp.rank_probit(adata, inplace=False)


@dataclass
class Case:
    """One comparison; times are compared per cell when cellrep and the peer see different cell counts."""

    name: str
    ours: Callable
    peer: Callable | None
    ours_input: Callable
    ours_cells: int
    peer_input: Callable
    peer_cells: int
    note: str


def pp_cases(X, args) -> list[Case]:
    import scanpy as sc
    import sctop
    from sklearn.feature_selection import f_classif

    import cellrep as cr

    rng = np.random.default_rng(1)
    n_cells = X.shape[0]
    pearson_rows = min(args.pearson_cells, n_cells)
    anova_rows = min(args.anova_cells, n_cells)
    sctop_rows = min(args.sctop_cells, n_cells)
    labels = rng.integers(0, 10, size=anova_rows).astype(str)

    def full():
        return make_adata(X.copy())

    def rows(n, with_labels=False):
        return lambda: make_adata(X[:n].copy(), labels if with_labels else None)

    def scanpy_log_normalize(adata):
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)

    def same_input(name, ours, peer, make_input, cells, note):
        return Case(name, ours, peer, make_input, cells, make_input, cells, note)

    return [
        same_input(
            "log_normalize",
            cr.pp.log_normalize,
            scanpy_log_normalize,
            full,
            n_cells,
            "sc normalize_total+log1p (both in place)",
        ),
        same_input("normalize_total", cr.pp.normalize_total, sc.pp.normalize_total, full, n_cells, "sc"),
        same_input("log1p", cr.pp.log1p, sc.pp.log1p, full, n_cells, "sc"),
        same_input(
            "scale(zero_center=False)",
            lambda a: cr.pp.scale(a, zero_center=False),
            lambda a: sc.pp.scale(a, zero_center=False),
            full,
            n_cells,
            "sc.pp.scale",
        ),
        same_input(
            "scale(zero_center=True)",
            cr.pp.scale,
            None,
            full,
            n_cells,
            "no peer: scanpy densifies; cellrep keeps the centring implicit",
        ),
        same_input(
            "pearson_residuals",
            cr.pp.pearson_residuals,
            sc.experimental.pp.normalize_pearson_residuals,
            rows(pearson_rows),
            pearson_rows,
            f"scanpy experimental (dense); first {pearson_rows} cells; cellrep default: implicit result",
        ),
        same_input(
            "pearson_residuals(dense)",
            lambda a: cr.pp.pearson_residuals(a, dense=True),
            sc.experimental.pp.normalize_pearson_residuals,
            rows(pearson_rows),
            pearson_rows,
            f"scanpy experimental; first {pearson_rows} cells; both dense (float32 out)",
        ),
        Case(
            "rank_probit",
            run_rank_probit,
            lambda a: sctop.process(a.X.T.toarray()),
            full,
            n_cells,
            rows(sctop_rows),
            sctop_rows,
            f"sctop.process on the first {sctop_rows} cells (dense genes x cells); cellrep on all cells",
        ),
        same_input(
            "select_genes(anova)",
            lambda a: cr.pp.select_genes(a, method="anova", labels_key="label", n_top=2000),
            lambda a: f_classif(a.X, a.obs["label"].to_numpy()),
            rows(anova_rows, with_labels=True),
            anova_rows,
            f"sklearn f_classif on the same CSR; first {anova_rows} cells, 10 classes",
        ),
        same_input(
            "select_genes(hvg)",
            lambda a: cr.pp.select_genes(a, method="hvg", n_top=2000),
            lambda a: sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=2000, inplace=False),
            rows(anova_rows),
            anova_rows,
            f"sc seurat_v3 (cellrep: same table from in-place numba sums); first {anova_rows} cells",
        ),
    ]


def warm_up() -> None:
    """Compile every numba kernel (cellrep and scanpy) on a tiny matrix of the benchmark dtypes."""
    import scanpy as sc

    import cellrep as cr

    small = synthetic_csr(50, 40, 10, seed=2)
    labels = np.arange(50) % 3
    for matrix in (small, small.tocsc()):  # the CSC memory table must not trace compilation
        for transform in (
            cr.pp.log_normalize,
            cr.pp.normalize_total,
            cr.pp.log1p,
            cr.pp.scale,
            lambda a: cr.pp.scale(a, zero_center=False),
            cr.pp.pearson_residuals,
            lambda a: cr.pp.pearson_residuals(a, dense=True),
            lambda a: cr.pp.select_genes(a, labels_key="label", n_top=5),
            lambda a: cr.pp.select_genes(a, method="hvg", n_top=5),
            run_rank_probit,
            sc.pp.normalize_total,
            lambda a: sc.pp.scale(a, zero_center=False),
        ):
            with contextlib.suppress(NotImplementedError):
                transform(make_adata(matrix.copy(), labels.astype(str)))


def fmt(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if np.isnan(value) else f"{value:>{width}.{digits}f}"


def time_cases(cases: list[Case], X, floor: float, args) -> None:
    header = (
        f"{'function':<26}{'cr cells':>9}{'cr s':>8}{'peer cells':>11}{'peer s':>8}{'cr ms/cell':>11}"
        f"{'peer ms/cell':>13}{'peer/cr':>9}{'cr/copy':>9}{'cr peak/CSR':>12}{'peer peak/CSR':>14}  peer"
    )
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for case in cases:
        try:
            ours_time = timed(case.ours, case.ours_input, args.repeats)
        except NotImplementedError:
            print(f"{case.name:<26} cellrep function not implemented yet; skipped")
            continue
        peer_time = timed(case.peer, case.peer_input, args.repeats) if case.peer else nan
        ours_per_cell, peer_per_cell = ours_time / case.ours_cells, peer_time / case.peer_cells
        ours_peak = peer_peak = nan
        if not args.no_memory:
            ours_peak = peak_bytes(case.ours, case.ours_input) / csr_bytes(case.ours_input().X)
            if case.peer:
                peer_peak = peak_bytes(case.peer, case.peer_input) / csr_bytes(case.peer_input().X)
        print(
            f"{case.name:<26}{case.ours_cells:>9}{ours_time:>8.3f}{case.peer_cells:>11}{fmt(peer_time, 8, 3)}"
            f"{1e3 * ours_per_cell:>11.4f}{fmt(1e3 * peer_per_cell, 13, 4)}{fmt(peer_per_cell / ours_per_cell, 9, 1)}"
            f"{ours_per_cell * X.shape[0] / floor:>9.2f}{fmt(ours_peak, 12, 2)}{fmt(peer_peak, 14, 2)}  {case.note}",
            flush=True,
        )


def csc_memory(cases: list[Case]) -> None:
    """cellrep's peak memory on the same inputs stored as CSC (no timing)."""
    print(f"\n{'function (CSC input)':<26}{'cr peak/CSC':>12}")
    print("-" * 38)
    for case in cases:

        def as_csc(make_input=case.ours_input):
            adata = make_input()
            adata.X = adata.X.tocsc()
            return adata

        try:
            peak = peak_bytes(case.ours, as_csc) / csr_bytes(as_csc().X)
        except NotImplementedError:
            continue
        print(f"{case.name:<26}{peak:>12.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n_cells", type=int)
    parser.add_argument("n_genes", type=int)
    parser.add_argument("nnz_per_cell", type=int)
    parser.add_argument("--sctop-cells", type=int, default=200, help="cells for rank_probit vs sctop.process")
    parser.add_argument(
        "--pearson-cells", type=int, default=5000, help="cells for the Pearson residuals (scanpy's are dense)"
    )
    parser.add_argument("--anova-cells", type=int, default=20000, help="cells for ANOVA / hvg")
    parser.add_argument("--threads", type=int, default=None, help="cellrep numba thread limit")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per function (best is kept)")
    parser.add_argument(
        "--functions", nargs="+", help="only these functions (names as printed, prefix match)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak-memory runs")
    args = parser.parse_args()

    import cellrep as cr

    cr.settings.n_threads = args.threads
    warnings.simplefilter("ignore")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    start = time.perf_counter()
    X = synthetic_csr(args.n_cells, args.n_genes, args.nnz_per_cell)
    size = csr_bytes(X)
    print(
        f"matrix: {X.shape[0]} cells x {X.shape[1]} genes, {X.nnz} nnz ({args.nnz_per_cell}/cell), "
        f"CSR {size / 1e9:.3f} GB (float32 data, int32 indices); built in {time.perf_counter() - start:.1f} s"
    )
    warm_up()
    floor = timed(lambda data: data.copy(), lambda: X.data, max(args.repeats, 3))
    print(
        f"copy floor: X.data.copy() {floor:.3f} s, best of {max(args.repeats, 3)} ({X.data.nbytes / 1e9:.3f} GB)"
    )
    print(f"times: best of {args.repeats} runs for cellrep and for the peer\n")
    cases = pp_cases(X, args)
    if args.functions:
        cases = [case for case in cases if any(case.name.startswith(name) for name in args.functions)]
    time_cases(cases, X, floor, args)
    print(
        "\npeer/cr: per-cell speed-up. cr/copy: cellrep time per cell x all cells / copy floor. Peaks: "
        "tracemalloc peak of the call (input excluded) / CSR bytes of that call's input."
    )
    if not args.no_memory:
        csc_memory(cases)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
