"""The linear pipeline on a dask.distributed LocalCluster with two worker processes.

Every task is pickled to another process and scheduled by the distributed scheduler, so the
per-chunk functions, implicit matrices and kernels must survive the trip; results equal the
in-memory ones.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts

import cellrep as cr

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="2GB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _lazy_and_in_memory(n_cells: int, seed: int):
    counts = sparse.csr_matrix(synthetic_counts(n_cells, 120, seed=seed).astype(np.float32))
    return make_adata(counts), make_adata(da.from_array(counts, chunks=(100, -1), asarray=False))


def test_linear_pipeline_on_two_worker_processes(client):
    assert len(client.scheduler_info()["workers"]) == 2
    ref, ref_lazy = _lazy_and_in_memory(500, seed=0)
    query, query_lazy = _lazy_and_in_memory(300, seed=1)
    with distributed.get_task_stream(client) as task_stream:
        for adata in (ref, ref_lazy):
            cr.pp.log_normalize(adata)
            cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=60)
            selected = adata[:, adata.var["selected"].to_numpy()].copy()
            cr.tl.pca(selected, n_comps=10)
            adata.uns["pca_variance"] = selected.uns["pca"]["variance"]
    assert len({task["worker"] for task in task_stream.data}) == 2  # both processes computed chunks
    np.testing.assert_array_equal(ref.var["highly_variable"], ref_lazy.var["highly_variable"])
    np.testing.assert_allclose(ref_lazy.uns["pca_variance"], ref.uns["pca_variance"], rtol=1e-5)

    ref, ref_lazy = _lazy_and_in_memory(500, seed=0)
    for reference, target in ((ref, query), (ref_lazy, query_lazy)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cr.tl.transfer_labels(
                reference, target, labels_key="cell_type", linear_kwargs={"n_genes": 60, "max_value": None}
            )
    assert isinstance(ref_lazy.obsm["X_linear"], da.Array)
    expected = ref.obsm["X_linear"]  # float32 counts: equal to float32 rounding of the largest value
    np.testing.assert_allclose(
        np.asarray(ref_lazy.obsm["X_linear"].compute()),
        expected,
        rtol=1e-5,
        atol=1e-5 * np.abs(expected).max(),
    )
    np.testing.assert_allclose(query_lazy.obsm["cell_type_proba"], query.obsm["cell_type_proba"], atol=1e-5)
    assert (query_lazy.obs["cell_type_pred"] == query.obs["cell_type_pred"]).all()


def test_counts_held_by_the_workers_decode_to_the_same_pipeline(client):
    counts = sparse.csr_matrix(synthetic_counts(500, 120, seed=2).astype(np.float32))
    held = make_adata(da.from_array(counts, chunks=(100, -1), asarray=False))
    cr.persist_counts(held)
    # the workers count the held chunks' compact bytes (dask.sizeof), not a pickled object's
    worker_bytes = sum(client.run(lambda dask_worker: dask_worker.data.fast.total_weight).values())
    assert 0 < held.uns["persist_counts"]["bytes_held"] <= worker_bytes
    in_memory = make_adata(counts)
    for adata in (held, in_memory):
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=60)
    np.testing.assert_array_equal(held.var["selected"], in_memory.var["selected"])
    np.testing.assert_array_equal(held.X.compute().toarray(), in_memory.X.toarray())
