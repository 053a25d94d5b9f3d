"""From a file to annotations without loading the matrix: cr.read_lazy → cr.tl.transfer_labels.

A 200 000-cell count file is written to the test's temp dir chunk by chunk, opened lazily and
annotated from a small in-memory reference; Python's peak allocation during the annotation
(tracemalloc, which sees numpy's buffers in every thread) stays far below the dense matrix,
about the size of the CSR counts: only chunks of cells and the cells × components results are held.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import cellrep as cr

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
from benchmarks.synthetic_counts import synthetic_counts  # noqa: E402

N_CELLS, N_GENES, NNZ_PER_CELL, N_GROUPS = 200_000, 2_000, 100, 10
CHUNK_SIZE = 10_000
# The dense float32 matrix is 1526 MiB and the CSR counts about 160 MiB. Measured: 148 MiB, of
# which 38 MiB are the cells × 50 embedding and the rest two chunks in flight (two threads).
PEAK_BOUND_BYTES = 192 * 2**20
N_THREADS = 2


def test_annotate_200k_cell_file_with_bounded_memory(tmp_path):
    path = tmp_path / "query.h5ad"
    synthetic_counts(
        N_CELLS, N_GENES, nnz_per_cell=NNZ_PER_CELL, n_groups=N_GROUPS, chunk_size=CHUNK_SIZE
    ).write_h5ad(path)
    reference = synthetic_counts(3_000, N_GENES, nnz_per_cell=NNZ_PER_CELL, n_groups=N_GROUPS, cell_seed=7)
    reference.X = reference.X.compute()

    query = cr.read_lazy(path, chunk_size=CHUNK_SIZE)
    assert isinstance(query.X, da.Array)
    dense_bytes = N_CELLS * N_GENES * 4
    tracemalloc.start()
    try:
        with warnings.catch_warnings(), dask.config.set(scheduler="threads", num_workers=N_THREADS):
            warnings.simplefilter("ignore", UserWarning)
            cr.tl.transfer_labels(reference, query, labels_key="group", linear_kwargs={"n_genes": 500})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak traced allocation {peak / 2**20:.0f} MiB; dense matrix {dense_bytes / 2**20:.0f} MiB")
    assert peak < PEAK_BOUND_BYTES < dense_bytes / 7
    assert isinstance(query.obsm["X_linear"], da.Array)  # the embedding itself stays lazy
    accuracy = np.mean(
        query.obs["group_pred"].astype(str).to_numpy() == query.obs["group"].astype(str).to_numpy()
    )
    assert accuracy > 0.95
