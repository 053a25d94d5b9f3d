"""A lazily read reference is read a bounded number of times by ``transfer_labels``, with the same result.

``linear_embedding`` holds the normalized selected genes (and the scores) in memory when they fit
(:func:`cellrep._array._dask_blocks.persisted_if_fits`): the counts are then read by the gene
selection and once more for the selected genes, instead of once per statistic, PCA step and score.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts

import cellrep as cr

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
from cellrep._array import _dask_blocks  # noqa: E402

N_CELLS, N_GENES, CHUNK_ROWS = 600, 120, 100
N_CHUNKS = N_CELLS // CHUNK_ROWS


class CountedReads:
    """A dask array of CSR chunks that counts how often each chunk is read."""

    def __init__(self, matrix: sparse.csr_matrix) -> None:
        self.matrix, self.reads, self._lock = matrix, np.zeros(N_CHUNKS, dtype=int), threading.Lock()

    def read(self, block_id=None):
        index = block_id[0]
        with self._lock:
            self.reads[index] += 1
        return self.matrix[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]

    def array(self) -> da.Array:
        return da.map_blocks(
            self.read,
            chunks=((CHUNK_ROWS,) * N_CHUNKS, (self.matrix.shape[1],)),
            dtype=self.matrix.dtype,
            meta=sparse.csr_matrix((0, 0), dtype=self.matrix.dtype),
        )


def _transfer(reference_counts: sparse.csr_matrix, lazy: bool):
    reads = CountedReads(reference_counts)
    ref = make_adata(reads.array() if lazy else reference_counts)
    query = make_adata(sparse.csr_matrix(synthetic_counts(200, N_GENES, seed=5)))
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        warnings.simplefilter("ignore", UserWarning)
        cr.tl.transfer_labels(ref, query, labels_key="cell_type")
    return reads.reads, query, ref


@pytest.fixture(scope="module")
def counts() -> sparse.csr_matrix:
    return sparse.csr_matrix(synthetic_counts(N_CELLS, N_GENES, seed=4))


def test_reference_is_read_at_most_three_times_with_in_memory_results(counts):
    reads, query, ref = _transfer(counts, lazy=True)
    _, expected_query, expected_ref = _transfer(counts, lazy=False)
    # the gene selection, the selected genes (held in memory), and the first chunk for the size estimate
    assert reads[0] <= 3
    assert reads[1:].max() <= 2
    # as the parity test of the clipped default embedding: float32 clipped values, then sklearn's solver
    scale = np.abs(expected_ref.obsm["X_linear"]).max()
    np.testing.assert_allclose(
        np.asarray(ref.obsm["X_linear"]), expected_ref.obsm["X_linear"], rtol=1e-5, atol=1e-5 * scale
    )
    pd.testing.assert_series_equal(query.obs["cell_type_pred"], expected_query.obs["cell_type_pred"])
    np.testing.assert_allclose(
        query.obs["cell_type_confidence"], expected_query.obs["cell_type_confidence"], atol=1e-3
    )


def test_a_matrix_over_the_memory_budget_is_read_again_with_the_same_result(counts, monkeypatch):
    persisted_reads, persisted_query, _ = _transfer(counts, lazy=True)
    monkeypatch.setattr(_dask_blocks, "PERSIST_MEMORY_FRACTION", 0.0)
    reads, query, _ = _transfer(counts, lazy=True)
    # the statistics, the one-pass Gram PCA and the scores read the counts again
    assert reads.min() > persisted_reads.max()
    pd.testing.assert_series_equal(query.obs["cell_type_pred"], persisted_query.obs["cell_type_pred"])
    np.testing.assert_allclose(
        query.obs["cell_type_confidence"], persisted_query.obs["cell_type_confidence"], rtol=1e-6
    )
