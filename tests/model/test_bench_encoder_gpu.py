"""The GPU benchmark script runs unchanged on a CPU-only machine at a tiny size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_encoder_gpu.py"


def test_gpu_benchmark_falls_back_to_cpu_at_tiny_size():
    arguments = ["--device", "auto", "--batch-sizes", "16", "32", "--steps", "1", "--genes", "100"]
    arguments += ["--genes-per-cell", "40", "--layers", "1", "--d-model", "16", "--heads", "2", "--max-seq-len", "16"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "device cpu" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 16 ") or line.startswith("| 32 ")]
    assert len(rows) == 2
    cells_per_second = float(rows[0].split("|")[4])
    assert cells_per_second > 0
