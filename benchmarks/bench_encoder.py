"""CPU training and embedding throughput of CellEncoder: this checkout against another one.

Every measurement runs in a fresh subprocess whose ``PYTHONPATH`` points at one source tree:
this checkout (``new``) or ``--baseline-src`` (``old``; for example a ``git worktree`` of the
commit before the encoder rework), so both codes are timed in the same run on the same cells.
Training throughput is ``epochs × cells / seconds`` of ``model.train`` (Lightning set-up
included, no validation); embedding throughput is ``get_latent_representation`` on the same
cells. Three configurations:

- ``defaults``: each code's own defaults (``CellEncoder(adata)``, ``train(max_epochs=...)``),
  what a new user gets;
- ``new_arch``: both codes on the new default architecture (2 layers, ``d_model`` 64, 4 heads,
  64 tokens, batch 128, gene subsampling 0.5): what the code changes alone buy;
- ``old_arch``: both on the old default architecture (4 layers, ``d_model`` 128, 256 tokens,
  batch 256, subsampling 0.3).

Data: the first ``--cells`` cells of ``baron_human_subset`` from the shared data folder (all
genes), or synthetic counts when it is absent.

Usage::

    git worktree add /tmp/cellrep-baseline d1b778c
    python benchmarks/bench_encoder.py --baseline-src /tmp/cellrep-baseline/src --cells 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _shared_data import shared_data_dir

HERE = Path(__file__).resolve().parents[1]


DATA = shared_data_dir() / "baron_human_subset.h5ad"

CONFIGS = {
    "defaults": {"model": {}, "train": {}, "plan": {}},
    "new_arch": {
        "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "max_seq_len": 64},
        "train": {"batch_size": 128},
        "plan": {"subsample_rate": 0.5, "mask_ratio": 0.15},
    },
    "old_arch": {
        "model": {"n_layers": 4, "d_model": 128, "n_heads": 4, "max_seq_len": 256},
        "train": {"batch_size": 256},
        "plan": {"subsample_rate": 0.3, "mask_ratio": 0.15},
    },
}

WORKER = r"""
import json, sys, time, warnings
import numpy as np, torch, scvi
warnings.filterwarnings("ignore")
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
import anndata as ad
from scipy import sparse
import cellrep as cr
if spec["data"]:
    adata = ad.read_h5ad(spec["data"])[: spec["cells"]].copy()
    adata.obs = adata.obs[[]]
else:
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(spec["cells"], 3000)))
    adata = ad.AnnData(sparse.csr_matrix(counts.astype(np.float32)))
    adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
scvi.settings.seed = 0
cr.model.CellEncoder.setup_anndata(adata)
model = cr.model.CellEncoder(adata, **spec["model"])
train = {"max_epochs": spec["epochs"], "train_size": 1.0, "enable_progress_bar": False} | spec["train"]
if spec["plan"]:
    train["plan_kwargs"] = spec["plan"]
start = time.perf_counter()
model.train(**train)
train_seconds = time.perf_counter() - start
start = time.perf_counter()
model.get_latent_representation()
embed_seconds = time.perf_counter() - start
n = adata.n_obs
print(json.dumps({"train_cells_per_s": spec["epochs"] * n / train_seconds, "embed_cells_per_s": n / embed_seconds,
                  "train_seconds": train_seconds}))
"""


def measure(source: Path, config: dict, args) -> dict:
    spec = {
        "data": str(DATA) if DATA.exists() and not args.synthetic else "",
        "cells": args.cells,
        "epochs": args.epochs,
        "threads": args.threads,
        **config,
    }
    env = os.environ | {"PYTHONPATH": str(source), "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baseline-src", type=Path, required=True, help="src/ folder of the baseline checkout"
    )
    parser.add_argument("--cells", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--synthetic", action="store_true", help="synthetic counts even if Baron is present")
    args = parser.parse_args()
    print(
        f"cells {args.cells}, epochs {args.epochs}, torch threads {args.threads}, data "
        f"{'synthetic' if args.synthetic or not DATA.exists() else DATA.name}",
        flush=True,
    )
    print("| config | code | train cells/s | embed cells/s |\n|---|---|---:|---:|")
    for name in args.configs:
        results = {}
        for label, source in (("old", args.baseline_src), ("new", HERE / "src")):
            results[label] = measure(source, CONFIGS[name], args)
            row = results[label]
            print(
                f"| {name} | {label} | {row['train_cells_per_s']:.1f} | {row['embed_cells_per_s']:.1f} |",
                flush=True,
            )
        train_ratio = results["new"]["train_cells_per_s"] / results["old"]["train_cells_per_s"]
        embed_ratio = results["new"]["embed_cells_per_s"] / results["old"]["embed_cells_per_s"]
        print(f"| {name} | **new / old** | **{train_ratio:.2f}×** | **{embed_ratio:.2f}×** |", flush=True)


if __name__ == "__main__":
    main()
