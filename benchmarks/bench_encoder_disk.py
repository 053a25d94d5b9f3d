"""CellEncoder training from disk and across processes: steps per second and peak memory.

Usage::

    python benchmarks/bench_encoder_disk.py N_CELLS [--n-genes 2000] [--nnz-per-cell 100]
        [--steps 40] [--batch-size 256] [--path DIR] [--chunk-size 1000] [--chunk-window auto]
        [--configs memory,backed,lazy-random,lazy,backed-ddp]

Writes synthetic counts (``synthetic_counts.py``, float32 CSR) to ``DIR/encoder_N.h5ad`` chunk
by chunk (reused when present), then trains the default ``CellEncoder`` (``n_token_genes=1000``)
for ``--steps`` optimiser steps of ``--batch-size`` cells in a fresh process per configuration:

- ``memory``: ``anndata.read_h5ad`` (X loaded), one process with 2 torch threads;
- ``backed``: ``read_h5ad(backed='r')``, one process with 2 threads;
- ``lazy-random``: ``cr.read_lazy(chunk_size=--chunk-size)`` (dask) with scvi-tools' random
  minibatches (``chunk_window=None``), one process with 2 threads;
- ``lazy``: the same file, minibatches cut from windows of ``--chunk-window`` chunks read once
  per epoch (``model.train(chunk_window=...)``), one process with 2 threads;
- ``backed-ddp``: backed, ``strategy='ddp'`` on 2 CPU processes of 1 thread each (gloo).

Prints, per configuration, the seconds of ``model.train`` (Lightning set-up included), steps
per second, the seconds Lightning's ``SimpleProfiler`` spent fetching minibatches (``load_s``)
and in the optimiser steps (``step_s``), the seconds of open + ``setup_anndata`` +
``CellEncoder(...)``, rank 0's peak resident memory (``ru_maxrss``), the mean training loss of
the last 10 steps, and for dask counts the seconds inside dask computes during training and the
chunks read (a dask callback counting the chunk-reading tasks). A configuration name may repeat
in ``--configs``, to alternate configurations on a loaded machine.
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
    "lazy-random": ("lazy-random", None, 2),
    "lazy": ("lazy", None, 2),
    "backed-ddp": ("backed", "ddp", 1),
}
LAST_STEPS = 10


def write_file(path: Path, args) -> None:
    if path.exists():
        return
    from synthetic_counts import synthetic_counts

    synthetic_counts(args.n_cells, args.n_genes, nnz_per_cell=args.nnz_per_cell).write_h5ad(path)


class DaskReads:
    """A dask callback: seconds inside dask computes and chunks read from the file (lazy X only)."""

    def __init__(self):
        from dask.callbacks import Callback

        self.seconds, self.chunk_reads, self._start = 0.0, 0, 0.0
        self.callback = Callback(start=self.start, finish=self.finish, pretask=self.pretask)

    def start(self, dsk) -> None:
        self._start = time.perf_counter()

    def finish(self, dsk, state, errored) -> None:
        self.seconds += time.perf_counter() - self._start

    def pretask(self, key, dsk, state) -> None:
        # read_elem_lazy names its chunk-reading tasks make_dask_chunk-<token>
        if isinstance(key, tuple) and str(key[0]).startswith("make_dask_chunk"):
            self.chunk_reads += 1


def record_step_losses() -> list:
    """The total training loss of every step (the training plan logs epoch means only)."""
    from cellrep.model._trainingplan import CellEncoderTrainingPlan

    losses, log_losses = [], CellEncoderTrainingPlan._log_losses

    def logging(plan, values, mode, n_cells):
        if mode == "train":
            losses.append(float(values["loss"]))
        log_losses(plan, values, mode, n_cells)

    CellEncoderTrainingPlan._log_losses = logging
    return losses


def run(
    path: str, configuration: str, steps: int, batch_size: int, chunk_size: int, chunk_window: int | str
) -> dict:
    import anndata as ad
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    import cellrep as cr

    mode, strategy, threads = CONFIGURATIONS[configuration]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    if mode == "memory":
        adata = ad.read_h5ad(path)
    elif mode == "backed":
        adata = ad.read_h5ad(path, backed="r")
    else:
        adata = cr.read_lazy(path, chunk_size=chunk_size)
    cr.model.CellEncoder.setup_anndata(adata)
    model = cr.model.CellEncoder(adata, n_token_genes=1000)
    prepared = time.perf_counter()
    parallel = {"devices": 2, "strategy": strategy} if strategy else {}
    window = {"chunk_window": None if mode == "lazy-random" else chunk_window}
    losses, reads, profiler = record_step_losses(), DaskReads(), SimpleProfiler()
    with reads.callback:
        model.train(
            max_steps=steps,
            batch_size=batch_size,
            accelerator="cpu",
            enable_progress_bar=False,
            profiler=profiler,
            **window,
            **parallel,
        )
    trained = time.perf_counter()
    durations = profiler.recorded_durations
    result = {
        "rank0": bool(model.trainer.is_global_zero),
        "prepare_s": round(prepared - start, 1),
        "train_s": round(trained - prepared, 1),
        "steps_per_s": round(steps / (trained - prepared), 3),
        # Lightning's own timers: fetching the minibatches, and the optimiser steps
        "load_s": round(sum(durations["[_TrainingEpochLoop].train_dataloader_next"]), 1),
        "step_s": round(sum(durations["run_training_batch"]), 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        f"loss_last_{LAST_STEPS}": round(sum(losses[-LAST_STEPS:]) / len(losses[-LAST_STEPS:]), 4),
    }
    if mode.startswith("lazy"):
        result |= {
            "dask_s": round(reads.seconds, 1),
            "chunk_reads": reads.chunk_reads,
            "n_chunks": len(adata.X.chunks[0]),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_cells", type=int)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--nnz-per-cell", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--path", type=Path, default=Path("/tmp"))
    parser.add_argument("--chunk-size", type=int, default=1000, help="cells per dask chunk (lazy)")
    parser.add_argument(
        "--chunk-window",
        type=lambda value: value if value == "auto" else int(value),
        default="auto",
        help="chunks per window (lazy): a number or 'auto', the model default",
    )
    parser.add_argument("--configs", default=",".join(CONFIGURATIONS), help="comma-separated configurations")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one configuration, in this process
    args = parser.parse_args()
    path = args.path / f"encoder_{args.n_cells}.h5ad"
    if args.run:
        result = run(str(path), args.run, args.steps, args.batch_size, args.chunk_size, args.chunk_window)
        if result.pop("rank0"):
            print(json.dumps(result))
        return
    write_file(path, args)
    dense_gib = args.n_cells * args.n_genes * 4 / 2**30
    print(f"{args.n_cells} cells x {args.n_genes} genes ({dense_gib:.2f} GiB dense float32), {path}")
    for name in args.configs.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--run", name]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        print(f"{name:>11}: {lines[-1] if lines else done.stderr[-2000:]}", flush=True)


if __name__ == "__main__":
    main()
