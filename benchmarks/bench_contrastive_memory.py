"""Memory of the divide-and-conquer contrastive step vs the naive full-batch step, plus throughput.

Memory: every configuration runs in a fresh subprocess that builds the module and a synthetic
CSR batch (every cell has ``--seq-len`` non-zero genes, so sequences are full), records its
resident set size (VmRSS), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
runs ONE training step (no-grad encoding, full-batch loss, re-encoding with the cached
gradient, AdamW step) and reads the peak (VmHWM). The step's memory is ``peak - RSS before``:
on CPU the allocations are ordinary heap memory, so the resident high-water mark of the step
is the sound measure, and a fresh process per run keeps one configuration's allocator pools
from hiding another's. The synthetic batch is built row by row so that building it does not
set the peak.

Throughput: cells/s of training steps (default CellEncoder config) and of embedding, and the
time of a forward+backward pass of the encoder with SDPA vs Performer attention at long
sequence lengths.

Usage::

    python benchmarks/bench_contrastive_memory.py --sizes 256 1024 4096 --chunk 64 --naive-sizes 256 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak is the step's own."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def synthetic_batch(n_cells: int, n_genes: int, genes_per_cell: int, seed: int = 0):
    import torch

    rng = np.random.default_rng(seed)
    # row by row, so generating a large batch does not itself raise the process's peak memory
    indices = np.stack([np.sort(rng.choice(n_genes, genes_per_cell, replace=False)) for _ in range(n_cells)])
    values = rng.integers(1, 30, size=(n_cells, genes_per_cell)).astype(np.float32)
    indptr = np.arange(0, n_cells * genes_per_cell + 1, genes_per_cell)
    return {
        "X": torch.sparse_csr_tensor(
            torch.as_tensor(indptr),
            torch.as_tensor(indices.ravel()),
            torch.as_tensor(values.ravel()),
            size=(n_cells, n_genes),
        )
    }


def build(config: dict, chunk_size):
    import torch

    from cellrep.model._module import CellEncoderModule
    from cellrep.model._trainingplan import CellEncoderTrainingPlan

    torch.manual_seed(0)
    module = CellEncoderModule(
        config["n_genes"],
        n_layers=config["n_layers"],
        d_model=config["d_model"],
        n_heads=config["n_heads"],
        max_seq_len=config["seq_len"],
        attention=config.get("attention", "sdpa"),
    )
    plan = CellEncoderTrainingPlan(module, chunk_size=chunk_size)
    return module, plan, torch.optim.AdamW(module.parameters(), lr=1e-4)


def training_step(plan, optimizer, batch) -> None:
    import torch

    optimizer.zero_grad()
    plan.compute_gradients(batch, torch.Tensor.backward)
    optimizer.step()


def child(config: dict) -> None:
    """One measured step in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(config["threads"])
    _module, plan, optimizer = build(config, config["chunk"])
    batch = synthetic_batch(config["batch"], config["n_genes"], config["seq_len"])
    training_step(
        plan, optimizer, synthetic_batch(8, config["n_genes"], config["seq_len"], seed=1)
    )  # warm up, Adam state
    before = status_mb("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    training_step(plan, optimizer, batch)
    seconds = time.perf_counter() - start
    peak = status_mb("VmHWM")
    print(json.dumps({"before_mb": before, "peak_mb": peak, "step_mb": peak - before, "seconds": seconds}))


def run_child(config: dict, fixed_mmap_threshold: bool) -> dict:
    environment = dict(os.environ)
    if fixed_mmap_threshold:
        # glibc raises its mmap threshold after each large free, so freed chunk activations
        # return to the brk heap, where the small tensors kept between chunks fragment it and
        # RSS creeps up with the number of chunks; a fixed threshold measures live memory
        environment["MALLOC_MMAP_THRESHOLD_"] = "65536"
    output = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def memory_table(args, config: dict) -> None:
    print(f"\n== peak memory of one training step (config {config}) ==")
    print(f"{'batch':>6} {'mode':>14} {'step MB':>9} {'peak RSS MB':>12} {'vs batch-256':>13} {'s/step':>7}")
    reference = None
    for size in args.sizes:
        result = run_child(config | {"batch": size, "chunk": args.chunk}, not args.glibc_default)
        reference = reference or result["step_mb"]
        ratio = result["step_mb"] / reference
        print(
            f"{size:>6} {'chunk ' + str(args.chunk):>14} {result['step_mb']:>9.0f} {result['peak_mb']:>12.0f} {ratio:>12.2f}x {result['seconds']:>7.1f}",
            flush=True,
        )
    for size in args.naive_sizes:
        result = run_child(config | {"batch": size, "chunk": None}, not args.glibc_default)
        print(
            f"{size:>6} {'naive (full)':>14} {result['step_mb']:>9.0f} {result['peak_mb']:>12.0f} {result['step_mb'] / reference:>12.2f}x {result['seconds']:>7.1f}",
            flush=True,
        )


def throughput(args) -> None:
    import torch

    from cellrep.model._tokenize import tokenize

    torch.set_num_threads(args.threads)
    config = {"n_genes": args.n_genes, "n_layers": 4, "d_model": 128, "n_heads": 4, "seq_len": 256}
    module, plan, optimizer = build(config, args.chunk)
    batch = synthetic_batch(args.throughput_cells, args.n_genes, 256)
    training_step(plan, optimizer, synthetic_batch(8, args.n_genes, 256, seed=1))
    start = time.perf_counter()
    training_step(plan, optimizer, batch)
    train_rate = args.throughput_cells / (time.perf_counter() - start)
    module.eval()
    start = time.perf_counter()
    for first in range(0, args.throughput_cells, 128):
        module.embed(batch["X"].to_dense()[first : first + 128])
    embed_rate = args.throughput_cells / (time.perf_counter() - start)
    print(f"\n== throughput, default config {config}, {args.threads} threads ==")
    print(f"training (2 contrastive views + MLM, chunk {args.chunk}): {train_rate:.1f} cells/s")
    print(f"embedding (inference): {embed_rate:.1f} cells/s")

    print("\n== encoder forward+backward, SDPA vs Performer (d_model 64, 2 layers, 4 heads, 2 cells) ==")
    print(f"{'seq len':>8} {'sdpa s':>8} {'performer s':>12} {'ratio':>7}")
    for length in args.long_lengths:
        times = {}
        for attention in ("sdpa", "performer"):
            config = {
                "n_genes": 4 * length,
                "n_layers": 2,
                "d_model": 64,
                "n_heads": 4,
                "seq_len": length,
                "attention": attention,
            }
            module, _, _ = build(config, None)
            counts = synthetic_batch(2, 4 * length, length)["X"]
            tokens = tokenize(counts, n_genes=4 * length, max_seq_len=length, scheme="equal_bins", n_bins=10)
            module.encode(tokens).sum().backward()  # warm up
            start = time.perf_counter()
            for _ in range(3):
                module.encode(tokens).sum().backward()
            times[attention] = (time.perf_counter() - start) / 3
        print(
            f"{length:>8} {times['sdpa']:>8.3f} {times['performer']:>12.3f} {times['sdpa'] / times['performer']:>6.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--naive-sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--throughput-cells", type=int, default=256)
    parser.add_argument("--long-lengths", type=int, nargs="*", default=[512, 2048])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--glibc-default",
        action="store_true",
        help="keep glibc's dynamic mmap threshold in the measured runs",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    config = {
        "n_genes": args.n_genes,
        "n_layers": args.layers,
        "d_model": args.d_model,
        "n_heads": 4,
        "seq_len": args.seq_len,
        "threads": args.threads,
    }
    if not args.skip_memory:
        memory_table(args, config)
    if not args.skip_throughput:
        throughput(args)


if __name__ == "__main__":
    main()
