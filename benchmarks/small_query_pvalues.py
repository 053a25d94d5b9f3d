"""Reference p-values of small queries: in-sample calibration vs the split-conformal rule of ``transfer_labels``.

Usage::

    python benchmarks/small_query_pvalues.py [--data-dir ../shared/data] [--dataset pbmc3k] [--novel NK]
        [--sizes 30 80 99 100] [--repeats 3] [--query zheng68k_reduced]

The dataset's cells are shuffled (seed 0); the first 500 form a pool of queries, the rest
without the ``--novel`` type the reference. With ``--query``, the pool is that other dataset
(another lab: its cells are all "known" unless their label is ``--novel``) and the reference
the whole dataset without ``--novel``. Each query (``--sizes`` cells drawn from the pool,
``--repeats`` draws) goes through the default ``transfer_labels``; printed are the median
p-value of the known and the novel cells and the share called unknown, for its p-values and for
the former rule (the reference's in-sample leave-one-out distances, unscaled under 100 cells:
``reference_pvalues`` on the embedding ``transfer_labels`` wrote).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

POOL_CELLS = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--dataset", default="pbmc3k")
    parser.add_argument("--novel", default="NK")
    parser.add_argument("--sizes", nargs="+", type=int, default=[30, 80, 99, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--query", help="another dataset of --data-dir as the query pool")
    args = parser.parse_args()

    import anndata as ad
    import numpy as np

    import cellrep as cr
    from cellrep.tl._novelty import certainty, reference_pvalues
    from cellrep.tl._transfer import DEFAULT_UNKNOWN_THRESHOLD

    adata = ad.read_h5ad(args.data_dir / f"{args.dataset}.h5ad")
    order = np.random.default_rng(0).permutation(adata.n_obs)
    pool = adata[order[:POOL_CELLS]].copy()
    ref = adata[order[POOL_CELLS:]]
    if args.query:
        pool, ref = ad.read_h5ad(args.data_dir / f"{args.query}.h5ad"), adata
    ref = ref[ref.obs["cell_type"] != args.novel].copy()
    print(
        f"{args.dataset}: reference {ref.n_obs} cells without {args.novel}; query pool {args.query or ''} {pool.n_obs}"
    )
    print("cells  draw  novel | rule        p known  p novel  unknown known  unknown novel")
    for size in args.sizes:
        for draw in range(args.repeats):
            rows = np.random.default_rng(10 + draw).choice(pool.n_obs, size, replace=False)
            query, reference = pool[rows].copy(), ref.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cr.tl.transfer_labels(reference, query, labels_key="cell_type")
            novel = query.obs["cell_type"].to_numpy() == args.novel
            confidence = query.obs["cell_type_confidence"].to_numpy()
            in_sample = reference_pvalues(reference.obsm["X_linear"], query.obsm["X_linear"])
            for rule, pvalues in (
                ("transfer", query.obs["cell_type_reference_pvalue"].to_numpy()),
                ("in-sample", in_sample),
            ):
                unknown = certainty(confidence, pvalues) < DEFAULT_UNKNOWN_THRESHOLD
                print(
                    f"{size:5d}  {draw:4d}  {novel.sum():5d} | {rule:10s}  {np.median(pvalues[~novel]):7.3f}  "
                    f"{np.median(pvalues[novel]) if novel.any() else np.nan:7.3f}  "
                    f"{unknown[~novel].mean():13.3f}  {unknown[novel].mean() if novel.any() else np.nan:13.3f}"
                )


if __name__ == "__main__":
    main()
