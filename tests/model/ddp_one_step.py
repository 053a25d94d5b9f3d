"""One optimiser step of a tiny CellEncoder, as a script (``strategy='ddp'`` relaunches it per rank).

``python ddp_one_step.py OUT DEVICES CHUNK_SIZE`` trains one SGD step on a global batch of
``GLOBAL_BATCH`` cells with ``strategy='ddp'`` on ``DEVICES`` CPU processes (gloo) and rank 0
saves the parameters before and after, and the logged losses, to ``OUT`` (torch.save).
With one device the DDP strategy runs in this process alone, so scvi-tools' distributed
sampler draws the same global batch as two processes do (their first batches together).

Deterministic encodings (no dropout, no masking loss, no augmentation) and plain SGD without
clipping, so the update is proportional to the gradient (Adam's first step is ~lr * sign).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

import cellrep as cr

N_CELLS, N_GENES, GLOBAL_BATCH = 64, 30, 16
DETERMINISTIC_PLAN = {
    "mlm_weight": 0.0,
    "contrastive_weight": 1.0,
    "supervised_weight": 1.0,
    "subsample_rate": 0.0,
    "thinning": 1.0,
    "warmup_fraction": 0.0,
    "gradient_clip_val": None,
    "weight_decay": 0.0,
}


def planted_counts(seed: int = 0) -> AnnData:
    """Poisson counts of three cell types, each with its own block of marker genes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(N_CELLS) % 3
    means = np.full((N_CELLS, N_GENES), 0.7)
    for label in range(3):
        means[labels == label, label * 8 : (label + 1) * 8] = 6.0
    adata = AnnData(sparse.csr_matrix(rng.poisson(means).astype(np.float32)))
    adata.obs_names = [f"cell{i}" for i in range(N_CELLS)]
    adata.var_names = [f"gene{j}" for j in range(N_GENES)]
    adata.obs["cell_type"] = pd.Categorical([f"type{label}" for label in labels])
    return adata


def one_step(devices: int, chunk_size: int | None, strategy: str = "ddp") -> dict | None:
    torch.set_num_threads(1)
    adata = planted_counts()
    cr.model.CellEncoder.setup_anndata(adata, labels_key="cell_type")
    torch.manual_seed(0)
    model = cr.model.CellEncoder(
        adata, n_layers=1, d_model=8, n_heads=2, max_seq_len=8, dropout=0.0, n_token_genes=None
    )
    before = {key: value.clone() for key, value in model.module.state_dict().items()}
    plan = DETERMINISTIC_PLAN | {
        "chunk_size": chunk_size,
        "optimizer": "Custom",
        "lr": 0.5,
        "optimizer_creator": functools.partial(torch.optim.SGD, lr=0.5),
    }
    model.train(
        max_epochs=1,
        max_steps=1,
        batch_size=GLOBAL_BATCH,
        train_size=1.0,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        plan_kwargs=plan,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if not model.trainer.is_global_zero:
        return None
    losses = {key: float(frame.iloc[-1, 0]) for key, frame in model.history.items()}
    return {"before": before, "after": model.module.state_dict(), "losses": losses}


if __name__ == "__main__":
    out, devices, chunk = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    result = one_step(devices, None if chunk == "none" else int(chunk))
    if result is not None:
        torch.save(result, out)
