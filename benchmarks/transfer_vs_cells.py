"""Why ``transfer_labels`` loses accuracy on the large synthetic files of ``bench_dask.py``.

Usage::

    python benchmarks/transfer_vs_cells.py FILE N_CELLS [N_CELLS ...] [--genes default|fixed|seurat_v3|anova]
        [--fixed-from 10000] [--random-halves]

Loads the first ``N_CELLS`` cells of a file written by ``bench_dask.py`` (in memory), labels the
second half from the first with ``cr.tl.transfer_labels`` (defaults) and prints the accuracy, the
share called unknown and the group information of the genes the embedding used: the sum over
them of eta² = Var_groups(λ) / (E λ + Var_groups(λ)), the share of a gene's Poisson count
variance that the groups explain (λ: expected reads per cell of each group, from the
generator's profiles, seed 0).

``--genes`` ablates the embedding's gene selection (the rest of the pipeline is untouched):
``default`` (seurat HVG on the reference, as ``transfer_labels`` does), ``fixed`` (the seurat HVG
genes chosen on the first ``--fixed-from`` cells, the same for every size), ``seurat_v3`` (the
variance-stabilized flavour on the reference's counts) or ``anova`` (``gene_selection='anova'``).
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from anndata import AnnData
from synthetic_counts import group_profiles

import cellrep as cr
import cellrep.tl._linear as linear_module

NNZ_PER_CELL = 500  # reads per cell of bench_dask.py's files
SEED = 0


def gene_information(n_genes: int, n_groups: int) -> np.ndarray:
    """eta² of every gene: the share of its Poisson read variance explained by the groups."""
    expected = group_profiles(n_genes, n_groups, SEED) * NNZ_PER_CELL
    between = expected.var(axis=0)
    return between / (expected.mean(axis=0) + between)


def hvg_positions(counts, flavor: str, n_top: int) -> np.ndarray:
    from cellrep.tl._linear_steps import log_values

    data = AnnData(counts if flavor == "seurat_v3" else log_values(counts))
    table = cr.pp.select_genes(data, method="hvg", flavor=flavor, n_top=n_top, inplace=False)
    return np.flatnonzero(table["selected"].to_numpy(bool))


@contextmanager
def genes_chosen_by(choose):
    """Ablation hook: within the block, ``linear_embedding`` keeps the genes ``choose(counts, n_genes)`` returns."""
    if choose is None:
        yield
        return
    remembered = {}
    log_values, select_gene_positions = linear_module.log_values, linear_module.select_gene_positions

    def remembering_log_values(counts):
        remembered["counts"] = counts
        return log_values(counts)

    linear_module.log_values = remembering_log_values
    linear_module.select_gene_positions = lambda log_matrix, codes, n_genes: choose(
        remembered["counts"], n_genes
    )
    try:
        yield
    finally:
        linear_module.log_values, linear_module.select_gene_positions = log_values, select_gene_positions


def run(path: Path, n_cells: int, genes: str, fixed_from: int, random_halves: bool) -> None:
    counts = cr.read_lazy(path, chunk_size=50_000)[:n_cells].copy()
    counts.X = counts.X.compute()
    order = np.arange(n_cells)
    if random_halves:
        order = np.random.default_rng(1).permutation(n_cells)
    half = n_cells // 2
    ref, query = counts[np.sort(order[:half])].copy(), counts[np.sort(order[half:])].copy()
    del counts
    kwargs, choose = {}, None
    if genes == "fixed":
        first = cr.read_lazy(path, chunk_size=50_000)[:fixed_from].X.compute()
        fixed = hvg_positions(first, "seurat", 2000)
        choose = lambda counts, n_genes: fixed  # noqa: E731
    elif genes == "seurat_v3":
        choose = lambda counts, n_genes: hvg_positions(counts, "seurat_v3", n_genes)  # noqa: E731
    elif genes == "anova":
        kwargs["linear_kwargs"] = {"gene_selection": "anova"}
    start = time.perf_counter()
    with genes_chosen_by(choose):
        cr.tl.transfer_labels(ref, query, labels_key="group", **kwargs)
    seconds = time.perf_counter() - start
    truth = query.obs["group"].astype(str).to_numpy()
    predicted = query.obs["group_pred"].astype(str).to_numpy()
    called = predicted != "unknown"
    used = ref.var_names.get_indexer(np.asarray(ref.uns["linear"]["genes"]))
    information = gene_information(ref.n_vars, ref.obs["group"].nunique())
    print(
        f"{n_cells:>9} cells, genes {genes}{' (random halves)' if random_halves else ''}: "
        f"accuracy {np.mean(predicted == truth):.4f}, unknown {1 - called.mean():.4f}, "
        f"called right {np.mean(predicted[called] == truth[called]):.4f}; "
        f"genes' sum eta² {information[used].sum():.1f} (best 2000: {np.sort(information)[-2000:].sum():.1f}), "
        f"{np.mean(information[used] < 0.01):.2f} of them with eta² < 0.01; transfer {seconds:.0f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("n_cells", type=int, nargs="+")
    parser.add_argument("--genes", choices=("default", "fixed", "seurat_v3", "anova"), default="default")
    parser.add_argument("--fixed-from", type=int, default=10_000)
    parser.add_argument("--random-halves", action="store_true")
    args = parser.parse_args()
    for n_cells in args.n_cells:
        run(args.path, n_cells, args.genes, args.fixed_from, args.random_halves)


if __name__ == "__main__":
    main()
