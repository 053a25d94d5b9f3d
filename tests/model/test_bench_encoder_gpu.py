"""The GPU benchmark script runs unchanged on a CPU-only machine at a tiny size."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from tests.model.model_fixtures import single_torch_thread  # noqa: F401

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_encoder_gpu.py"


def test_gpu_benchmark_falls_back_to_cpu_at_tiny_size(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    arguments = ["--device", "cuda", "--batch-sizes", "16", "32", "--steps", "1", "--genes", "100"]
    arguments += [
        "--genes-per-cell",
        "40",
        "--layers",
        "1",
        "--d-model",
        "16",
        "--heads",
        "2",
        "--max-seq-len",
        "16",
    ]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *arguments])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    output = capsys.readouterr().out
    assert "falling back to the CPU" in output
    assert "device cpu" in output
    rows = [line for line in output.splitlines() if line.startswith(("| 16 ", "| 32 "))]
    assert len(rows) == 2
    assert all(float(row.split("|")[4]) > 0 for row in rows)  # cells/s
