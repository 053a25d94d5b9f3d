"""Reference p-values of ``transfer_labels`` (``cellrep.tl._novelty``): calibration for any query size.

A query of fewer than 100 cells used to be compared with the reference's *in-sample*
leave-one-out distances in the reference-fitted PCA: the 50 components fit part of the
reference cells' own noise, so new cells of known types got p-values near 1 and novel cells
p-values ~15x larger than in a 100-cell query (USERTEST3). Small queries are now calibrated
out of sample (split conformal).
"""

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse, stats

import cellrep as cr
from cellrep.tl._novelty import calibration_split, held_out_pvalues

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


def test_small_query_of_known_types_gets_calibrated_pvalues():
    ref = typed_counts(400, seed=0)
    query = typed_counts(60, seed=1)  # fresh cells of the reference's own types
    cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    pvalues = query.obs["cell_type_reference_pvalue"].to_numpy()
    # documented: uniform on [0, 1] for cells drawn like the reference; was 1.000 in sample, now 0.503
    assert np.median(pvalues) < 0.8
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01  # 0.12


def test_novel_cells_stand_out_in_a_query_of_99_cells_as_in_one_of_100():
    ref = typed_counts(400, seed=0)
    ref = ref[ref.obs["cell_type"] != "type4"].copy()
    medians = {}
    for n_cells in (99, 100):
        query = typed_counts(n_cells, seed=1)
        cr.tl.transfer_labels(ref.copy(), query, labels_key="cell_type")
        novel = query.obs["cell_type"].to_numpy() == "type4"
        medians[n_cells] = np.median(query.obs["cell_type_reference_pvalue"].to_numpy()[novel])
    assert medians[100] < 0.05  # 0.020 (each side relative to its median)
    # every novel cell is farther from the reference than almost any reference cell; was 0.330, now 0.007
    assert medians[99] < 0.1


def test_calibration_split_halves_every_type():
    labels = np.repeat(["a", "b", "c"], [7, 10, 1])
    fit, held_out = calibration_split(labels, random_state=3)
    assert np.intersect1d(fit, held_out).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, held_out])), np.arange(18))
    # the fitted half takes the odd cell of each type
    assert [(labels[fit] == k).sum() for k in "abc"] == [4, 5, 1]
    assert [(labels[held_out] == k).sum() for k in "abc"] == [3, 5, 0]
    fit, held_out = calibration_split(labels, max_cells=10, random_state=3)
    assert fit.size + held_out.size == 10


def _brute_force_pvalues(fitted, held_out, query, n_neighbors):
    def mean_distance(cells):
        distances = np.linalg.norm(cells[:, None] - fitted[None], axis=2)
        return np.sort(distances, axis=1)[:, :n_neighbors].mean(axis=1)

    calibration, scores = mean_distance(held_out), mean_distance(query)
    return ((calibration[None] >= scores[:, None]).sum(axis=1) + 1) / (calibration.size + 1)


def test_held_out_pvalues_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    fitted, held_out = rng.normal(size=(80, 3)), rng.normal(size=(70, 3))
    query = rng.normal(size=(15, 3)) * 1.5  # under 20 cells: no shift is forgiven
    expected = _brute_force_pvalues(fitted, held_out, query, 5)
    np.testing.assert_allclose(held_out_pvalues(fitted, held_out, query, n_neighbors=5), expected)
    np.testing.assert_allclose(held_out_pvalues(fitted, held_out, np.full((1, 3), 9.0)), 1 / 71)


def test_held_out_pvalues_are_uniform_and_forgive_a_shift_of_the_whole_query():
    rng = np.random.default_rng(1)
    fitted, held_out = rng.normal(size=(1000, 5)), rng.normal(size=(1000, 5))
    # queries of 15 cells drawn like the reference, 60 times: pooled p-values are uniform
    pooled = np.concatenate([held_out_pvalues(fitted, held_out, rng.normal(size=(15, 5))) for _ in range(60)])
    assert stats.kstest(pooled, "uniform").pvalue > 0.05
    # of 50 cells: a chance excess of the query's median is forgiven, so p is at most slightly conservative
    pooled = np.concatenate([held_out_pvalues(fitted, held_out, rng.normal(size=(50, 5))) for _ in range(20)])
    for alpha in (0.05, 0.1, 0.25, 0.5):
        assert alpha - 0.06 < np.mean(pooled <= alpha) <= alpha + 0.01
    # a query of 40 cells moved as a whole (another batch) is brought back to the reference's scale
    shifted = held_out_pvalues(fitted, held_out, rng.normal(size=(40, 5)) + 1.0)
    assert 0.4 < np.median(shifted) < 0.6
    # ... but a query sitting tighter than the reference is not stretched: the same p-values as brute force
    tight = rng.normal(size=(40, 5)) * 0.5
    np.testing.assert_allclose(
        held_out_pvalues(fitted, held_out, tight), _brute_force_pvalues(fitted, held_out, tight, 10)
    )


def test_small_query_pvalues_do_not_depend_on_the_order_of_the_reference_cells():
    ref, query = typed_counts(200, seed=0), typed_counts(30, seed=1)
    shuffled = ref[np.random.default_rng(5).permutation(ref.n_obs)].copy()
    pvalues = []
    for reference in (ref, shuffled):
        target = query.copy()
        cr.tl.transfer_labels(reference, target, labels_key="cell_type")
        pvalues.append(target.obs["cell_type_reference_pvalue"].to_numpy())
    np.testing.assert_allclose(pvalues[0], pvalues[1])  # the cells are split and refitted in name order
    assert 0.3 < np.median(pvalues[0]) < 0.7
