"""How typical a query cell is of the reference: a conformal nearest-neighbour p-value.

A classifier's top probability says which reference type a cell resembles most, not whether
it resembles any: a type absent from the reference often lies far from every training cell,
where a linear model's probabilities are extreme. The distance to the nearest reference cells
measures that directly (kNN out-of-distribution score, Sun et al. 2022, ICML). It is turned
into a p-value by comparing it with the same distance of the reference cells themselves
(leave-one-out), the inductive conformal anomaly score of Laxhammar & Falkman (2015): for a
cell drawn like the reference cells the p-value is uniform on [0, 1]; a cell farther from the
reference than almost every reference cell gets a p-value near 0.

That holds only if the calibration cells are new to the embedding, as query cells are: the
inductive (split) conformal method keeps its calibration set out of the fit. The principal
components fitted on the reference absorb part of the reference cells' own noise, so their
in-sample distances are larger than a fresh cell's (PBMC3k, 80-cell query, NK held out of a
2 019-cell reference: known cells' median p 0.95, NK 0.38). ``held_out_pvalues`` calibrates
out of sample: the embedding is fitted again on half of the reference (``calibration_split``),
the other half and the query are projected into it, and both are scored against the fitted
half (same query: known median 0.56, NK 0.019; ``benchmarks/small_query_pvalues.py``).
"""

from __future__ import annotations

import numpy as np

#: neighbours whose mean distance is the nonconformity score
N_NEIGHBORS = 10
#: weight of the p-value in the certainty: the exponent (of 0.25, 0.5, 1, and the top probability
#: alone) with the best novel-vs-known AUROC on the other datasets was 0.25 for every held-out
#: dataset of the within-dataset novel-type task (measured before the median scaling was added)
PVALUE_EXPONENT = 0.25
#: below this many query cells the query's typical distance is not estimated (one cell would
#: always be its own median): small queries are compared on the reference's scale
MIN_QUERY_CELLS_TO_SCALE = 100
#: smallest query whose median distance is trusted to forgive a shift of the whole query (the
#: median of 20 cells is a known cell's while novel cells are fewer than 10)
MIN_QUERY_CELLS_TO_FORGIVE_SHIFT = 20
#: labelled reference cells below which the reference is not split for calibration: each half
#: must hold at least twice the neighbours averaged in the score
MIN_REFERENCE_CELLS_TO_SPLIT = 4 * N_NEIGHBORS
#: reference cells (sampled beyond this) that form the index and the calibration set: the
#: p-value needs only the distribution of reference distances, and the query cost stays bounded
MAX_REFERENCE_CELLS = 20_000


def reference_pvalues(
    reference: np.ndarray, query: np.ndarray, *, n_neighbors: int = N_NEIGHBORS, random_state: int = 0
) -> np.ndarray:
    """Conformal p-value of each query cell's mean distance to its nearest reference cells.

    Parameters
    ----------
    reference
        Reference cells × components, the shared embedding the classifier was trained on.
    query
        Query cells × components in the same embedding.
    n_neighbors
        Neighbours averaged in the score (fewer when the reference is smaller).
    random_state
        Seed of the sample of reference cells when it holds more than ``MAX_REFERENCE_CELLS``.

    For a query of at least ``MIN_QUERY_CELLS_TO_SCALE`` (100) cells, each side's distances
    are divided by their median first: a query from another dataset or species, farther from
    the reference as a whole, is then not novel, but a cell's p-value depends on the rest of
    the query (a query made only of novel cells looks typical). A smaller query is compared
    with in-sample distances of an embedding fitted on these very cells, which are too large
    (p biased towards 1): ``transfer_labels`` uses ``held_out_pvalues`` for it when it can refit
    the embedding.

    Returns
    -------
    Query cells, float64 in (0, 1]: the fraction (with the +1 correction of conformal
    prediction) of reference cells whose leave-one-out mean distance to their ``n_neighbors``
    nearest reference cells is at least the query cell's.
    """
    from sklearn.neighbors import NearestNeighbors

    reference = np.asarray(reference, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    if reference.shape[0] > MAX_REFERENCE_CELLS:
        rows = np.random.default_rng(random_state).choice(
            reference.shape[0], MAX_REFERENCE_CELLS, replace=False
        )
        reference = reference[rows]
    n_neighbors = int(min(n_neighbors, reference.shape[0] - 1))
    if n_neighbors < 1:
        return np.ones(query.shape[0])
    index = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(reference)
    # each reference cell's first neighbour is itself: drop it (leave-one-out)
    calibration = index.kneighbors(reference)[0][:, 1:].mean(axis=1)
    scores = index.kneighbors(query, n_neighbors=n_neighbors)[0].mean(axis=1)
    # A query from another dataset or species sits farther from the reference as a whole: each
    # side's distances are taken relative to its own median, so that only cells far beyond the
    # query's typical distance (a type the reference lacks, when it is a minority) stand out.
    if query.shape[0] >= MIN_QUERY_CELLS_TO_SCALE:
        calibration = calibration / _positive_median(calibration)
        scores = scores / _positive_median(scores)
    return _conformal_pvalues(calibration, scores)


def calibration_split(
    labels: np.ndarray, *, max_cells: int = MAX_REFERENCE_CELLS, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the reference to fit the embedding on, and held-out rows to calibrate with.

    Each label's cells are shuffled and split in halves (the fitted half takes the odd cell),
    so every type is in both parts; beyond ``max_cells`` a random sample is split.

    Parameters
    ----------
    labels
        Reference cells, the labels.
    max_cells
        Cells sampled before splitting (the fit and the calibration stay bounded).
    random_state
        Seed of the sample and the split.

    Returns
    -------
    Two sorted int arrays of row positions, disjoint, of sizes ``ceil`` and ``floor`` of half.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(random_state)
    rows = np.arange(labels.size)
    if rows.size > max_cells:
        rows = np.sort(rng.choice(rows, max_cells, replace=False))
    fit, held_out = [], []
    for label in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == label])
        half = (members.size + 1) // 2
        fit.append(members[:half])
        held_out.append(members[half:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held_out))


def held_out_pvalues(
    fitted: np.ndarray, held_out: np.ndarray, query: np.ndarray, *, n_neighbors: int = N_NEIGHBORS
) -> np.ndarray:
    """Split-conformal p-value of each query cell's mean distance to its nearest fitted cells.

    Parameters
    ----------
    fitted
        Reference cells × components: the cells the embedding was fitted on (the index).
    held_out
        Other reference cells × components, projected into that embedding as the query was
        (the calibration set).
    query
        Query cells × components, projected into the same embedding.
    n_neighbors
        Neighbours averaged in the score (fewer when ``fitted`` is smaller).

    Returns
    -------
    Query cells, float64 in (0, 1]: the fraction (with the +1 correction) of held-out cells
    whose mean distance to their ``n_neighbors`` nearest fitted cells is at least the query
    cell's. Held-out and query cells are scored alike, so for a query cell drawn like the
    reference the p-value is uniform (Laxhammar & Falkman 2015), however small the query.
    """
    from sklearn.neighbors import NearestNeighbors

    fitted = np.asarray(fitted, dtype=np.float64)
    n_neighbors = int(min(n_neighbors, fitted.shape[0]))
    index = NearestNeighbors(n_neighbors=n_neighbors).fit(fitted)
    calibration = index.kneighbors(np.asarray(held_out, dtype=np.float64))[0].mean(axis=1)
    scores = index.kneighbors(np.asarray(query, dtype=np.float64))[0].mean(axis=1)
    if scores.size >= MIN_QUERY_CELLS_TO_FORGIVE_SHIFT:
        # a query whose typical cell is farther than the typical held-out cell (another lab or
        # species) is shrunk back to the reference's scale; a typical query is never stretched
        scores = scores / max(_positive_median(scores) / _positive_median(calibration), 1.0)
    return _conformal_pvalues(calibration, scores)


def _conformal_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    calibration = np.sort(calibration)
    at_least = calibration.size - np.searchsorted(calibration, scores, side="left")
    return (at_least + 1) / (calibration.size + 1)


def _positive_median(distances: np.ndarray) -> float:
    median = float(np.median(distances))
    return median if median > 0 else 1.0


def certainty(confidence: np.ndarray, pvalues: np.ndarray) -> np.ndarray:
    """Top probability × p-value^0.25: high only for a cell both clearly typed and typical of the reference.

    A small exponent keeps the reference's own cells (p uniform on [0, 1]) near their top
    probability while a cell farther from the reference than every reference cell
    (p ≈ 1 / n) drops well below it.
    """
    return np.asarray(confidence) * np.asarray(pvalues) ** PVALUE_EXPONENT
