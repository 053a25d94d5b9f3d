"""CellEncoder training from disk and across processes: steps per second and peak memory.

Usage::

    python benchmarks/bench_encoder_disk.py N_CELLS [--n-genes 2000] [--nnz-per-cell 100]
        [--steps 40] [--batch-size 256] [--path DIR]

Writes synthetic counts (``synthetic_counts.py``, float32 CSR) to ``DIR/encoder_N.h5ad`` chunk
by chunk (reused when present), then trains the default ``CellEncoder`` (``n_token_genes=1000``)
for ``--steps`` optimiser steps of ``--batch-size`` cells in a fresh process per configuration:

- ``memory``: ``anndata.read_h5ad`` (X loaded), one process with 2 torch threads;
- ``backed``: ``read_h5ad(backed='r')``, one process with 2 threads;
- ``lazy``: ``cr.read_lazy(chunk_size=1000)`` (dask), one process with 2 threads;
- ``backed-ddp``: backed, ``strategy='ddp'`` on 2 CPU processes of 1 thread each (gloo).

Prints, per configuration, the seconds of ``model.train`` (Lightning set-up included), steps
per second, the seconds of open + ``setup_anndata`` + ``CellEncoder(...)``, and rank 0's peak
resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGURATIONS = {
    "memory": ("memory", None, 2),
    "backed": ("backed", None, 2),
    "lazy": ("lazy", None, 2),
    "backed-ddp": ("backed", "ddp", 1),
}


def write_file(path: Path, args) -> None:
    if path.exists():
        return
    from synthetic_counts import synthetic_counts

    synthetic_counts(args.n_cells, args.n_genes, nnz_per_cell=args.nnz_per_cell).write_h5ad(path)


def run(path: str, mode: str, strategy: str | None, threads: int, steps: int, batch_size: int) -> dict:
    import anndata as ad
    import torch

    import cellrep as cr

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if mode == "memory":
        adata = ad.read_h5ad(path)
    elif mode == "backed":
        adata = ad.read_h5ad(path, backed="r")
    else:
        adata = cr.read_lazy(path, chunk_size=1000)
    cr.model.CellEncoder.setup_anndata(adata)
    model = cr.model.CellEncoder(adata, n_token_genes=1000)
    prepared = time.perf_counter()
    parallel = {"devices": 2, "strategy": strategy} if strategy else {}
    model.train(
        max_steps=steps, batch_size=batch_size, accelerator="cpu", enable_progress_bar=False, **parallel
    )
    trained = time.perf_counter()
    return {
        "rank0": bool(model.trainer.is_global_zero),
        "prepare_s": round(prepared - start, 1),
        "train_s": round(trained - prepared, 1),
        "steps_per_s": round(steps / (trained - prepared), 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_cells", type=int)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--nnz-per-cell", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--path", type=Path, default=Path("/tmp"))
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one configuration, in this process
    args = parser.parse_args()
    path = args.path / f"encoder_{args.n_cells}.h5ad"
    if args.run:
        mode, strategy, threads = CONFIGURATIONS[args.run]
        result = run(str(path), mode, strategy, threads, args.steps, args.batch_size)
        if result.pop("rank0"):
            print(json.dumps(result))
        return
    write_file(path, args)
    dense_gib = args.n_cells * args.n_genes * 4 / 2**30
    print(f"{args.n_cells} cells x {args.n_genes} genes ({dense_gib:.2f} GiB dense float32), {path}")
    for name in CONFIGURATIONS:
        command = [sys.executable, __file__, *sys.argv[1:], "--run", name]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        print(f"{name:>11}: {lines[-1] if lines else done.stderr[-2000:]}", flush=True)


if __name__ == "__main__":
    main()
