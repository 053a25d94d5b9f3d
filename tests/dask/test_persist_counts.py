"""cr.persist_counts: one read of a lazily loaded matrix, held compactly, bitwise equal on decode."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts

import cellrep as cr
from cellrep._array._dask_compact import decode_block, encode_block

da = pytest.importorskip("dask.array")


def _lazy(matrix, chunk_rows: int = 70):
    return make_adata(da.from_array(matrix, chunks=(chunk_rows, -1), asarray=False))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("kind", [sparse.csr_matrix, sparse.csr_array])
def test_decoded_chunks_equal_the_stored_ones(dtype, kind):
    counts = kind(synthetic_counts(300, 80, seed=2).astype(dtype))
    adata = _lazy(counts)
    cr.persist_counts(adata)
    held = adata.X.compute()
    assert type(held) is type(counts)
    assert held.dtype == counts.dtype
    assert adata.X.chunks == ((70, 70, 70, 70, 20), (80,))
    np.testing.assert_array_equal(held.toarray(), counts.toarray())
    # uint8 or uint16 values and uint16 gene indices: at most 4 bytes per stored value
    assert adata.uns["persist_counts"]["bytes_held"] <= 4 * counts.nnz + 8 * (300 + 5)


def test_value_and_index_dtypes_are_the_smallest_that_hold_them():
    small = sparse.csr_matrix(np.array([[0, 3, 255], [1, 0, 0]], dtype=np.float32))
    large = sparse.csr_matrix(np.array([[0, 256, 70_000], [1, 0, 0]], dtype=np.float32))
    assert encode_block(small).data.dtype == np.uint8
    assert encode_block(large).data.dtype == np.uint32
    assert encode_block(small).indices.dtype == np.uint8  # 3 genes
    blocks = {}
    for n_genes, index_dtype in ((256, np.uint8), (20_000, np.uint16), (70_001, np.uint32)):
        blocks[n_genes] = sparse.csr_matrix(
            (np.ones(2, np.float32), np.array([0, n_genes - 1]), np.array([0, 1, 2])), shape=(2, n_genes)
        )
        assert encode_block(blocks[n_genes]).indices.dtype == index_dtype
    for block in (small, large, *blocks.values()):
        np.testing.assert_array_equal(decode_block(encode_block(block)).toarray(), block.toarray())


@pytest.mark.parametrize(
    "values", [[0.5, 2.0], [-1.0, 2.0], [np.nan, 1.0], [np.inf, 1.0]], ids=["fraction", "negative", "nan", "inf"]
)
def test_values_that_are_not_counts_are_held_unchanged(values):
    block = sparse.csr_matrix(np.array([values, [0.0, 3.0]], dtype=np.float32))
    encoded = encode_block(block)
    assert encoded.data.dtype == np.float32
    np.testing.assert_array_equal(decode_block(encoded).toarray(), block.toarray())


def test_boolean_chunks_round_trip():
    block = sparse.csr_matrix(np.array([[True, False], [False, True]]))
    decoded = decode_block(encode_block(block))
    assert decoded.dtype == np.bool_
    np.testing.assert_array_equal(decoded.toarray(), block.toarray())


def test_pipeline_on_held_counts_equals_the_lazy_one():
    counts = sparse.csr_matrix(synthetic_counts(400, 120, seed=3).astype(np.float32))
    held, lazy = _lazy(counts, 100), _lazy(counts, 100)
    cr.persist_counts(held)
    for adata in (held, lazy):
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=40)
    np.testing.assert_array_equal(held.var["selected"], lazy.var["selected"])
    variances = []
    for adata in (held, lazy):
        selected = adata[:, adata.var["selected"].to_numpy()].copy()
        cr.tl.pca(selected, n_comps=5)
        variances.append(selected.uns["pca"]["variance"])
    np.testing.assert_array_equal(*variances)


def test_dense_chunks_and_layers():
    counts = synthetic_counts(200, 50, seed=4).astype(np.float32)
    adata = _lazy(counts)
    adata.layers["counts"] = adata.X
    cr.persist_counts(adata, layer="counts")
    assert isinstance(adata.layers["counts"], da.Array)
    np.testing.assert_array_equal(adata.layers["counts"].compute(), counts)
    assert adata.uns["persist_counts"] == {"layer": "counts", "bytes_held": counts.nbytes}


def test_refuses_what_it_cannot_hold():
    counts = sparse.csr_matrix(synthetic_counts(100, 30, seed=5).astype(np.float32))
    with pytest.raises(ValueError, match=r"not in adata\.layers"):
        cr.persist_counts(_lazy(counts), layer="missing")
    with pytest.raises(TypeError, match="read_lazy"):
        cr.persist_counts(make_adata(counts))
    csc = make_adata(da.from_array(counts.tocsc(), chunks=(50, -1), asarray=False))
    with pytest.raises(TypeError, match="CSC"):
        cr.persist_counts(csc)
    by_genes = make_adata(da.from_array(counts.toarray(), chunks=(50, 10)))
    with pytest.raises(TypeError, match="chunked along genes"):
        cr.persist_counts(by_genes)
    assert "persist_counts" not in by_genes.uns


def test_negative_zero_keeps_its_sign():
    values = sparse.random(200, 50, density=0.2, format="csr", random_state=0, dtype=np.float32)
    values.data = np.round(values.data * 10)
    values.data[:5] = -0.0
    adata = _lazy(values, 50)
    cr.persist_counts(adata)
    held = adata.X.compute()
    np.testing.assert_array_equal(np.signbit(held.data), np.signbit(values.data))
    np.testing.assert_array_equal(held.toarray(), values.toarray())
