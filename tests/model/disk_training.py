"""Train a tiny CellEncoder from a file on disk and report the peak memory it added (a script).

``python disk_training.py PATH MODE N_STEPS [CHUNK_WINDOW]`` (MODE ``backed`` or ``lazy``;
CHUNK_WINDOW, chunks of 2000 cells read at once in lazy mode, defaults to the model's) first warms up
imports and Lightning with a few in-memory cells, records the peak resident set size, then
opens ``PATH`` without loading X (``anndata.read_h5ad(backed='r')`` or ``cr.read_lazy``),
registers it, builds the encoder (its initialisation statistics read a sample of cells),
and trains ``N_STEPS`` minibatches. It prints one JSON line:
the peak RSS increase over the warm-up in bytes, and the numbers of trained steps.
"""

from __future__ import annotations

import json
import resource
import sys

import anndata as ad
import numpy as np
import torch
from scipy import sparse

import cellrep as cr

TINY = {"n_layers": 1, "d_model": 16, "n_heads": 2, "max_seq_len": 16, "n_token_genes": 500}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def warm_up(n_genes: int) -> None:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(0.5, (256, n_genes)).astype(np.float32)))
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    cr.model.CellEncoder.setup_anndata(adata)
    model = cr.model.CellEncoder(adata, **TINY)
    model.train(max_steps=2, batch_size=64, train_size=1.0, **QUIET)
    model.get_latent_representation()


def main(path: str, mode: str, n_steps: int, chunk_window: int | None = None) -> dict:
    torch.set_num_threads(1)
    n_genes = ad.read_h5ad(path, backed="r").n_vars
    warm_up(n_genes)
    baseline = peak_rss_bytes()
    adata = ad.read_h5ad(path, backed="r") if mode == "backed" else cr.read_lazy(path, chunk_size=2_000)
    cr.model.CellEncoder.setup_anndata(adata)
    model = cr.model.CellEncoder(adata, **TINY)
    window = {} if chunk_window is None else {"chunk_window": chunk_window}
    model.train(max_steps=n_steps, batch_size=128, train_size=1.0, **QUIET, **window)
    return {
        "peak_increase_bytes": peak_rss_bytes() - baseline,
        "baseline_bytes": baseline,
        "steps": int(model.trainer.global_step),
        "n_obs": adata.n_obs,
    }


if __name__ == "__main__":
    window = int(sys.argv[4]) if len(sys.argv) > 4 else None
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), window)))
