"""Pretraining throughput of CellEncoder on an accelerator: bf16 autocast, no padding mask.

One training step = two augmented views (binomial thinning, gene subsampling, MLM masking) of
a synthetic count batch, encoded with the cells grouped by exact length (``length_buckets``:
no padding mask, so CUDA's SDPA can take its flash kernel), contrastive + MLM loss, backward
and an AdamW step, through the package's own training plan (``chunk_size='auto'``: the
divide-and-conquer replay only when the batch would not fit half the device memory). bf16
autocast is on when the device supports it. Prints cells/s and peak memory per batch size and
stops early when ``--max-seconds`` is used up. On a machine without CUDA it runs on the CPU
(same code, float32), which is how it is tested.

Usage::

    python benchmarks/bench_encoder_gpu.py --batch-sizes 1024 2048 4096
    python benchmarks/bench_encoder_gpu.py --device cpu --batch-sizes 16 --steps 1 --genes 200
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def synthetic_batch(n_cells: int, n_genes: int, genes_per_cell: int, device, seed: int = 0) -> torch.Tensor:
    """CSR counts with a variable number of expressed genes per cell (50-100 % of ``genes_per_cell``)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(genes_per_cell // 2, genes_per_cell + 1, size=n_cells)
    indices = np.concatenate([np.sort(rng.choice(n_genes, size, replace=False)) for size in sizes])
    values = rng.negative_binomial(2, 0.3, size=indices.size).astype(np.float32) + 1
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    return torch.sparse_csr_tensor(
        torch.as_tensor(indptr), torch.as_tensor(indices), torch.as_tensor(values), size=(n_cells, n_genes)
    ).to(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    from cellrep.model._module import CellEncoderModule
    from cellrep.model._trainingplan import CellEncoderTrainingPlan

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cuda' or 'cpu'")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1024, 2048, 4096])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per batch size (after one warm-up)")
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--genes-per-cell", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    args = parser.parse_args()
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available: falling back to the CPU")
        device = torch.device("cpu")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    print(f"device {device}, bf16 autocast {bf16}, torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    module = CellEncoderModule(
        args.genes,
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=args.heads,
        max_seq_len=args.max_seq_len,
        length_buckets=True,
    ).to(device)
    module.train()
    plan = CellEncoderTrainingPlan(module)
    if device.type == "cuda":
        plan.memory_bytes = torch.cuda.get_device_properties(device).total_memory // 2
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    start_all = time.perf_counter()
    print(
        "| batch | chunked | s / step | cells/s | peak memory (MB) |\n|---:|---|---:|---:|---:|", flush=True
    )
    for batch_size in args.batch_sizes:
        batch = {"X": synthetic_batch(batch_size, args.genes, args.genes_per_cell, device)}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step(batch=batch) -> None:
            optimizer.zero_grad()
            plan.compute_gradients(batch, torch.Tensor.backward)
            optimizer.step()

        step()  # warm-up (kernel selection, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, done = time.perf_counter(), 0
        for _ in range(args.steps):
            step()
            done += 1
            if time.perf_counter() - start_all > args.max_seconds:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / done
        chunked = plan.effective_chunk_size(batch_size) is not None
        print(
            f"| {batch_size} | {chunked} | {seconds:.3f} | {batch_size / seconds:.1f} | {peak_memory_mb(device):.0f} |",
            flush=True,
        )
        if time.perf_counter() - start_all > args.max_seconds:
            print(f"stopped: --max-seconds {args.max_seconds} used up")
            break


if __name__ == "__main__":
    main()
