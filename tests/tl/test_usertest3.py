"""USERTEST3 bug reports (issue 10 acceptance, novel types): known failures, marked xfail(strict=True).

A query of fewer than 100 cells is compared with the reference's *in-sample* leave-one-out
distances in the reference-fitted PCA (``MIN_QUERY_CELLS_TO_SCALE``). The reference cells'
own noise is partly fitted by the 50 components, so their distances are inflated relative to
any new cell: new cells of known types get p-values near 1 instead of uniform (as
``cellrep.tl._novelty`` documents), and novel cells get p-values ~15x larger than in a
100-cell query. Measured on PBMC3k (1 745-cell reference without NK, 80-cell query): known
median p 0.97, novel NK 0.39; the same with a 100-cell query: 0.58 and 0.045.

Remove the xfail markers once fixed; each assertion states the observed value.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import cellrep as cr

N_GENES = 1000
N_TYPES = 5


def typed_counts(n_cells: int, *, seed: int) -> ad.AnnData:
    """Poisson counts; each type over-expresses 150 fixed marker genes 4-12x (profiles shared across seeds)."""
    profiles_rng = np.random.default_rng(123)
    base = profiles_rng.gamma(0.3, 2.0, size=N_GENES)
    profiles = np.ones((N_TYPES, N_GENES))
    for profile in profiles:
        markers = profiles_rng.choice(N_GENES, 150, replace=False)
        profile[markers] = profiles_rng.uniform(4, 12, 150)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_TYPES, n_cells)
    rates = base * profiles[labels]
    rates *= rng.uniform(1500, 4000, (n_cells, 1)) / rates.sum(axis=1, keepdims=True)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{k}" for k in labels])},
        index=[f"s{seed}_{i}" for i in range(n_cells)],
    )
    genes = pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)])
    return ad.AnnData(sparse.csr_matrix(rng.poisson(rates).astype(np.float32)), obs=obs, var=genes)


@pytest.mark.xfail(
    strict=True, reason="USERTEST3 bug: small-query p-values are not calibrated (observed median 1.0)"
)
def test_small_query_of_known_types_gets_calibrated_pvalues():
    ref = typed_counts(400, seed=0)
    query = typed_counts(60, seed=1)  # fresh cells of the reference's own types
    cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    pvalues = query.obs["cell_type_reference_pvalue"].to_numpy()
    # documented: uniform on [0, 1] for cells drawn like the reference; observed median 1.000
    assert np.median(pvalues) < 0.8


@pytest.mark.xfail(
    strict=True, reason="USERTEST3 bug: a 99-cell query hides novel cells that a 100-cell query shows"
)
def test_novel_cells_stand_out_in_a_query_of_99_cells_as_in_one_of_100():
    ref = typed_counts(400, seed=0)
    ref = ref[ref.obs["cell_type"] != "type4"].copy()
    medians = {}
    for n_cells in (99, 100):
        query = typed_counts(n_cells, seed=1)
        cr.tl.transfer_labels(ref.copy(), query, labels_key="cell_type")
        novel = query.obs["cell_type"].to_numpy() == "type4"
        medians[n_cells] = np.median(query.obs["cell_type_reference_pvalue"].to_numpy()[novel])
    assert medians[100] < 0.05  # holds: 0.020
    # every novel cell is farther from the reference than almost any reference cell; observed 0.330
    assert medians[99] < 0.1
