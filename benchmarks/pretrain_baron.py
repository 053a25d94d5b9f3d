"""Pretrain CellEncoder on Baron human + mouse pancreas within a time budget, then compare a
logistic-regression probe on its embedding with linear representations.

Mouse genes are renamed to their one-to-one human ortholog (``var['human_ortholog']``), the
two species are concatenated on the union of genes, and the model vocabulary is the
``--n-genes`` most variable genes (scanpy 'seurat' flavour, per species). After pretraining
(no labels), the benchmark harness (``cellrep.benchmark.run_benchmark``, task ``within``: 3
stratified 80/20 splits of baron_human_subset, seeds 0, 1, 2) reports macro-F1 of
``LogisticRegression`` on the frozen pretrained embedding (CLS and mean pooling) and on the same
architecture at random initialisation, beside cellrep's linear methods and scanpy's pipeline.

Usage::

    python benchmarks/pretrain_baron.py --minutes 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import cellrep as cr
from cellrep.benchmark import Method, results_table, run_benchmark

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_union() -> ad.AnnData:
    human = ad.read_h5ad(DATA / "baron_human_subset.h5ad")
    mouse = ad.read_h5ad(DATA / "baron_mouse.h5ad")
    ortholog = mouse.var["human_ortholog"].astype(str)
    renamed = np.where(ortholog != "", ortholog, "mouse:" + mouse.var_names.to_numpy())
    mouse.var_names = pd.Index(renamed)
    mouse = mouse[:, ~mouse.var_names.duplicated()].copy()
    for part in (human, mouse):
        part.obs = part.obs[["cell_type", "batch", "species"]].astype(str)
        part.var = part.var[[]]
    combined = ad.concat([human, mouse], join="outer", fill_value=0)
    combined.obs_names_make_unique()
    return combined


def variable_genes(adata: ad.AnnData, n_genes: int) -> pd.Index:
    normalized = adata.copy()
    sc.pp.normalize_total(normalized, target_sum=1e4)
    sc.pp.log1p(normalized)
    sc.pp.highly_variable_genes(normalized, n_top_genes=n_genes, batch_key="species", flavor="seurat")
    return normalized.var_names[normalized.var["highly_variable"].to_numpy()]


def frozen_encoder_method(name: str, model, pooling: str) -> Method:
    """A harness method: logistic regression on the latent space of an already trained encoder."""

    def fit(train, labels_key: str, seed: int):
        latent = model.get_latent_representation(train, pooling=pooling)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed))
        return probe.fit(latent, train.obs[labels_key].astype(str).to_numpy())

    def predict(probe, test) -> np.ndarray:
        return probe.predict(model.get_latent_representation(test, pooling=pooling))

    return Method(
        name, fit, predict, description=f"frozen CellEncoder ({pooling} pooling) + LogisticRegression"
    )


def make_model(adata: ad.AnnData, args: argparse.Namespace):
    return cr.model.CellEncoder(
        adata,
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=args.heads,
        max_seq_len=args.max_seq_len,
        tokenization=args.tokenization,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=9.5, help="training budget (wall clock)")
    parser.add_argument("--n-genes", type=int, default=3000)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=48)
    parser.add_argument("--tokenization", default="equal_bins")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--mlm-weight", type=float, default=1.0)
    parser.add_argument("--contrastive-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--subsample-rate", type=float, default=0.5)
    parser.add_argument("--mask-ratio", type=float, default=0.3)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument(
        "--linear-methods",
        nargs="+",
        default=["cellrep_default", "cellrep_log_logreg", "cellrep_rank_probit_logreg", "scanpy"],
        help="harness methods run beside the encoder",
    )
    parser.add_argument("--output", type=Path, help="CSV of the harness results")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; args: {vars(args)}", flush=True)

    combined = load_union()
    genes = variable_genes(combined, args.n_genes)
    adata = combined[:, genes].copy()
    print(f"{adata.n_obs} cells (human + mouse), vocabulary {adata.n_vars} genes", flush=True)

    scvi.settings.seed = args.seed
    cr.model.CellEncoder.setup_anndata(adata)
    model = make_model(adata, args)
    plan_kwargs = {
        "chunk_size": args.chunk_size,
        "lr": args.lr,
        "warmup_steps": 10,
        "mlm_weight": args.mlm_weight,
        "contrastive_weight": args.contrastive_weight,
        "subsample_rate": args.subsample_rate,
        "mask_ratio": args.mask_ratio,
        "temperature": args.temperature,
    }
    budget = args.minutes * 60
    # the wall-clock budget (Lightning's max_time) ends training; the cosine schedule spans
    # --max-epochs, so with the default the learning rate stays near its peak after warm-up
    max_epochs = args.max_epochs
    start = time.perf_counter()
    model.train(
        max_epochs=max_epochs,
        batch_size=args.batch_size,
        train_size=1.0,
        plan_kwargs=plan_kwargs,
        max_time={"seconds": budget},
        enable_progress_bar=False,
    )
    train_seconds = time.perf_counter() - start
    history = model.history
    epochs_done = len(history["train_loss"])
    print(
        f"trained {epochs_done} epochs in {train_seconds / 60:.2f} min; losses first/last epoch: "
        + ", ".join(
            f"{key} {history[key].iloc[0, 0]:.3f}/{history[key].iloc[-1, 0]:.3f}"
            for key in ("train_loss", "mlm_loss_train", "contrastive_loss_train")
        ),
        flush=True,
    )

    human = combined[combined.obs["species"] == "human"].copy()
    human = human[:, human.X.sum(axis=0).A1 > 0].copy()
    start = time.perf_counter()
    cr.tl.encode(human, model)
    print(f"embedding: {human.n_obs / (time.perf_counter() - start):.0f} cells/s", flush=True)

    untrained = make_model(adata, args)
    methods = [
        frozen_encoder_method("cellencoder_pretrained_cls", model, "cls"),
        frozen_encoder_method("cellencoder_pretrained_mean", model, "mean"),
        frozen_encoder_method("cellencoder_random_init_cls", untrained, "cls"),
        frozen_encoder_method("cellencoder_random_init_mean", untrained, "mean"),
        *args.linear_methods,
    ]
    results = run_benchmark(
        human, "cell_type", methods=methods, tasks=["within"], dataset="baron_human_subset"
    )
    print("\nmacro-F1 on baron_human_subset, logistic regression, 3 x stratified 80/20 (seeds 0,1,2)")
    print(results_table(results))
    if args.output:
        results.to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
