"""Acceptance run of the CellEncoder on Baron pancreas: harness methods, per-class F1, new-user path.

Part 1 (``--part harness``): ``cellrep benchmark``'s methods ``cellrep_default``,
``cellencoder_untrained``, ``cellencoder`` and ``cellencoder_finetuned`` on
baron_human_subset: the within task (3 stratified 80/20 splits, seeds 0, 1, 2) and the
cross-species task (human reference → Baron mouse, genes through ``var['mouse_ortholog']``;
the encoder is pretrained on the union of reference and query cells, without query labels).
Each encoder pretraining gets ``--minutes`` of wall clock (fine-tuning half of it).

Part 2 (``--part new_user``): what a new user types, on all genes of the training cells of the
same 3 splits: ``CellEncoder.setup_anndata(train); m = CellEncoder(train);
m.train(max_epochs=N)``, then ``m.get_latent_representation()`` + logistic regression,
beside ``cellrep_default`` on the same split.

Prints macro-F1 per method and split, mean ± sd, and per-class F1 summed over the splits'
predictions. Usage::

    python benchmarks/pretrain_baron.py --part harness --minutes 5 --output harness.csv
    python benchmarks/pretrain_baron.py --part new_user --epochs 8
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from _shared_data import shared_data_dir
from sklearn.metrics import f1_score

DATA = shared_data_dir()
METHODS = ["cellrep_default", "cellencoder_untrained", "cellencoder", "cellencoder_finetuned"]


def recording(method, store: list):
    """A copy of a harness method that also keeps its predictions (for per-class F1)."""
    from cellrep.benchmark import Method

    def predict(fitted, test):
        output = method.predict(fitted, test)
        predicted = np.asarray(output[0] if isinstance(output, tuple) else output).astype(str)
        store.append((method.name, tuple(test.obs_names), predicted))
        return output

    return Method(method.name, method.fit, predict, default=method.default, description=method.description)


def per_class_table(predictions: list, splits) -> pd.DataFrame:
    truth = {tuple(split.test.obs_names): (split.task, split.truth) for split in splits}
    rows = {}
    for name, cells, predicted in predictions:
        task, labels = truth[cells]
        rows.setdefault((task, name), ([], []))
        rows[(task, name)][0].extend(labels)
        rows[(task, name)][1].extend(predicted)
    table = {}
    for (task, name), (labels, predicted) in rows.items():
        classes = np.unique(labels)
        scores = f1_score(labels, predicted, labels=classes, average=None, zero_division=0)
        table[(task, name)] = pd.Series(scores, index=classes)
    return pd.DataFrame(table).round(3)


def harness(args) -> None:
    from cellrep.benchmark import METHODS as REGISTRY
    from cellrep.benchmark import make_splits, results_table, run_benchmark
    from cellrep.benchmark._encoder_methods import set_encoder_minutes

    set_encoder_minutes(args.minutes)
    human = ad.read_h5ad(DATA / "baron_human_subset.h5ad")
    mouse = ad.read_h5ad(DATA / "baron_mouse.h5ad")
    predictions: list = []
    methods = [recording(REGISTRY[name], predictions) for name in args.methods]
    options = {
        "query": mouse,
        "query_name": "baron_mouse",
        "orthologs": "mouse_ortholog",
        "dataset": "baron_human_subset",
        "seeds": args.seeds,
    }
    results = run_benchmark(human, "cell_type", methods=methods, tasks=args.tasks, progress=False, **options)
    print(
        results[
            ["task", "split", "method", "macro_f1", "accuracy", "fit_seconds", "predict_seconds", "error"]
        ].to_string()
    )
    print(results_table(results))
    summary = results.groupby(["task", "method"])["macro_f1"].agg(["mean", "std", "count"]).round(3)
    print(summary.to_string())
    splits = make_splits(human, "cell_type", tasks=args.tasks, **options)
    print("\nper-class F1 (all splits' test cells pooled)")
    print(per_class_table(predictions, splits).to_string())
    if args.output:
        results.to_csv(args.output, index=False)


def new_user(args) -> None:
    import scvi
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    import cellrep as cr
    from cellrep.benchmark import METHODS as REGISTRY

    human = ad.read_h5ad(DATA / "baron_human_subset.h5ad")
    labels = human.obs["cell_type"].astype(str).to_numpy()
    rows, predictions = [], []
    for seed in args.seeds:
        train_idx, test_idx = train_test_split(
            np.arange(human.n_obs), test_size=0.2, stratify=labels, random_state=seed
        )
        train, test = human[train_idx].copy(), human[test_idx].copy()
        scvi.settings.seed = seed
        start = time.perf_counter()
        cr.model.CellEncoder.setup_anndata(train)
        model = cr.model.CellEncoder(train)
        model.train(max_epochs=args.epochs)
        seconds = time.perf_counter() - start
        classifier = LogisticRegression(max_iter=1000).fit(
            model.get_latent_representation(), labels[train_idx]
        )
        predicted = classifier.predict(model.get_latent_representation(test))
        default = REGISTRY["cellrep_default"]
        linear = default.predict(default.fit(train.copy(), "cell_type", seed), test.copy())
        linear = linear[0] if isinstance(linear, tuple) else linear  # (labels, confidence)
        for name, guess in (("new_user_encoder", predicted), ("cellrep_default", linear)):
            score = f1_score(labels[test_idx], guess, labels=np.unique(labels[test_idx]), average="macro")
            rows.append({"seed": seed, "method": name, "macro_f1": score, "seconds": seconds})
            predictions.append((name, labels[test_idx], guess))
        print(rows[-2], rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string())
    print(table.groupby("method")["macro_f1"].agg(["mean", "std"]).round(3).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["harness", "new_user"], default="harness")
    parser.add_argument("--minutes", type=float, default=5.0, help="pretraining wall clock per split")
    parser.add_argument("--epochs", type=int, default=8, help="max_epochs of the new-user path")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--tasks", nargs="+", default=["within", "cross_species"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"args: {vars(args)}", flush=True)
    harness(args) if args.part == "harness" else new_user(args)


if __name__ == "__main__":
    main()
