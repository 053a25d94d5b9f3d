"""How ``transfer_labels`` degrades as the query shares fewer genes with the reference (``WARN_SHARED_GENES``).

Usage::

    python benchmarks/shared_genes_panel.py [--sizes 40 80 150 200 300 765] [--draws 3]

pbmc68k_reduced (scanpy's bundled counts, 765 genes): every 5th cell is the query, restricted
to k random genes (``--draws`` draws per k); prints the mean fraction of cells called unknown
and the macro-F1 over the true classes, with the default ``transfer_labels``.
"""

from __future__ import annotations

import argparse
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[40, 80, 150, 200, 300, 765])
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from sklearn.metrics import f1_score

    import cellrep as cr

    adata = cr.datasets.pbmc68k_reduced_counts()
    is_ref = np.arange(adata.n_obs) % 5 != 0
    ref, query = adata[is_ref].copy(), adata[~is_ref].copy()
    truth = query.obs["bulk_labels"].astype(str).to_numpy()
    print("shared_genes  unknown_fraction  macro_f1")
    for size in args.sizes:
        scores = []
        for draw in range(args.draws):
            genes = np.random.default_rng(draw).choice(
                adata.var_names, min(size, adata.n_vars), replace=False
            )
            target = query[:, genes].copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cr.tl.transfer_labels(ref.copy(), target, labels_key="bulk_labels")
            predicted = target.obs["bulk_labels_pred"].astype(str).to_numpy()
            f1 = f1_score(truth, predicted, labels=np.unique(truth), average="macro")
            scores.append(((predicted == "unknown").mean(), f1))
        unknown, f1 = np.mean(scores, axis=0)
        print(f"{size:12d}  {unknown:16.3f}  {f1:8.3f}")


if __name__ == "__main__":
    main()
