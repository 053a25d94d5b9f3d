"""cr.pp.rank_probit against the sctop package, scipy ranks and bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sctop
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse, special, stats
from tests.conftest import as_format, make_adata, read_shared, synthetic_counts

import cellrep as cr
from cellrep._array._offset import OffsetSparseMatrix
from cellrep._array._rank_probit import probit_table, rank_probit_matrix
from cellrep._kernels._rank import COUNT_BOUND, csr_rank_probit, csr_row_ranks


def sctop_reference(dense_cells_by_genes: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sctop divides all-zero cells by a zero norm
        return sctop.process(np.asarray(dense_cells_by_genes, dtype=np.float64).T).to_numpy().T


def to_dense(matrix) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


def numpy_rank_probit(dense: np.ndarray, l2_normalize: bool = True) -> np.ndarray:
    ranks = stats.rankdata(dense, axis=1)
    z = special.ndtri(ranks / (dense.shape[1] + 1))
    if l2_normalize:
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    return z


def test_matches_sctop(counts_adata):
    expected = sctop_reference(np.asarray(as_format(synthetic_counts(), "dense")))
    result = cr.pp.rank_probit(counts_adata, inplace=False)
    assert isinstance(result, OffsetSparseMatrix)
    np.testing.assert_allclose(np.asarray(result), expected, atol=1e-5)


def test_stored_layout(counts_adata):
    original = counts_adata.X.copy()
    cr.pp.rank_probit(counts_adata, key_added="rp")
    deltas = counts_adata.layers["rp"]
    assert sparse.issparse(deltas)
    assert deltas.nnz == np.count_nonzero(synthetic_counts())
    stored = cr.pp.get_rank_probit(counts_adata, "rp")
    np.testing.assert_allclose(stored.toarray(), sctop_reference(synthetic_counts()), atol=1e-5)
    assert counts_adata.uns["rp"]["params"]["l2_normalize"] is True
    assert (to_dense(counts_adata.X) == to_dense(original)).all()


def test_without_l2_normalization_and_dense_layer():
    counts = synthetic_counts(seed=3)
    adata = make_adata(sparse.csr_matrix(counts))
    result = cr.pp.rank_probit(adata, l2_normalize=False, inplace=False, dtype=np.float64)
    np.testing.assert_allclose(result.toarray(), numpy_rank_probit(counts, l2_normalize=False), atol=1e-12)
    cr.pp.rank_probit(adata, dense=True)
    assert isinstance(adata.layers["rank_probit"], np.ndarray)
    assert "rank_probit_offset" not in adata.obs
    np.testing.assert_allclose(cr.pp.get_rank_probit(adata).toarray(), numpy_rank_probit(counts), atol=1e-6)


def test_explicit_zeros_are_zeros():
    counts = synthetic_counts(seed=1).astype(np.float64)
    csr = sparse.csr_matrix(counts)
    csr.data[::3] = 0.0  # stored zeros
    expected = numpy_rank_probit(csr.toarray())
    result = rank_probit_matrix(csr, dtype=np.float64)
    assert result.deltas.nnz == csr.nnz
    np.testing.assert_allclose(result.toarray(), expected, atol=1e-12)


def test_empty_cell_warns_and_gives_zeros():
    counts = synthetic_counts()
    counts[4] = 0
    adata = make_adata(sparse.csr_matrix(counts))
    with pytest.warns(UserWarning, match="constant"):
        cr.pp.rank_probit(adata)
    values = cr.pp.get_rank_probit(adata).toarray()
    np.testing.assert_array_equal(values[4], 0.0)
    np.testing.assert_allclose(
        np.delete(values, 4, axis=0), np.delete(sctop_reference(counts), 4, axis=0), atol=1e-5
    )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda x: x.__setitem__((0, 3), np.nan), "NaN"),
        (lambda x: x.__setitem__((0, 3), -1.0), "negative"),
    ],
)
def test_bad_values_leave_adata_untouched(matrix_format, mutate, match):
    dense = synthetic_counts().astype(np.float64)
    mutate(dense)
    adata = make_adata(as_format(dense, matrix_format))
    with pytest.raises(ValueError, match=match):
        cr.pp.rank_probit(adata)
    assert "rank_probit" not in adata.layers
    assert "rank_probit" not in adata.uns
    assert "rank_probit_offset" not in adata.obs


def test_unknown_layer():
    adata = make_adata(synthetic_counts())
    with pytest.raises(ValueError, match="Layer 'counts' not found"):
        cr.pp.rank_probit(adata, layer="counts")
    assert not adata.layers


def test_get_rank_probit_without_offset():
    adata = make_adata(sparse.csr_matrix(synthetic_counts()))
    adata.layers["rank_probit"] = adata.X.copy()
    with pytest.raises(ValueError, match="offset"):
        cr.pp.get_rank_probit(adata)


def test_probit_table():
    n_cols = 7
    ranks = np.arange(15) / 2
    np.testing.assert_allclose(probit_table(n_cols), special.ndtri(ranks / (n_cols + 1)), rtol=1e-15)


# the counting path, the hybrid (values >= bound sorted after the counted ones) and sorting only
COUNT_BOUNDS = st.sampled_from([COUNT_BOUND, 3.0, 1.0])


@st.composite
def matrices_with_ties(draw):
    """Small rows with many ties, empty rows, all-zero columns, integer or fractional values."""
    n_rows = draw(st.integers(0, 8))
    n_cols = draw(st.integers(1, 12))
    elements = st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0, 2.5, 3.0, 7.0, 1500.0])
    if draw(st.booleans()):
        elements = st.integers(0, 9).map(float)  # integer rows only: the counting path
    values = draw(arrays(np.float64, (n_rows, n_cols), elements=elements))
    if n_rows and draw(st.booleans()):
        values[draw(st.integers(0, n_rows - 1))] = 0  # an empty row
    if draw(st.booleans()):
        values[:, draw(st.integers(0, n_cols - 1))] = 0  # an all-zero column
    return values.astype(draw(st.sampled_from([np.float32, np.float64, np.int64])))


@settings(max_examples=60, deadline=None)
@given(matrices_with_ties(), COUNT_BOUNDS, st.booleans())
def test_kernel_ranks_match_scipy(dense, count_bound, explicit_zeros):
    csr = sparse.csr_matrix(dense)
    if explicit_zeros and csr.nnz:
        csr.data[::2] = 0  # stored zeros rank with the implicit ones
        dense = csr.toarray()
    twice_ranks, n_zeros = csr_row_ranks(csr.data, csr.indptr, dense.shape[1], count_bound)
    expected = stats.rankdata(dense, axis=1) if dense.size else dense
    for row in range(dense.shape[0]):
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        np.testing.assert_array_equal(twice_ranks[lo:hi] / 2, expected[row, csr.indices[lo:hi]])
        zero_columns = dense[row] == 0
        np.testing.assert_array_equal(expected[row, zero_columns], (n_zeros[row] + 1) / 2)
        assert n_zeros[row] == zero_columns.sum()


@settings(max_examples=60, deadline=None)
@given(matrices_with_ties(), st.booleans(), COUNT_BOUNDS)
def test_kernel_transform_matches_numpy(dense, l2_normalize, count_bound):
    csr = sparse.csr_matrix(dense)
    n_rows, n_cols = dense.shape
    deltas = np.full(csr.nnz, np.nan)
    offsets = np.full(n_rows, np.nan)
    csr_rank_probit(
        csr.data, csr.indptr, n_cols, probit_table(n_cols), l2_normalize, deltas, offsets, count_bound
    )
    result = (
        sparse.csr_matrix((deltas, csr.indices, csr.indptr), shape=dense.shape).toarray() + offsets[:, None]
    )
    np.testing.assert_allclose(result, numpy_rank_probit(dense.astype(np.float64), l2_normalize), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(matrices_with_ties(), st.booleans())
def test_transform_matches_numpy(dense, l2_normalize):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = rank_probit_matrix(dense, l2_normalize=l2_normalize, dtype=np.float64)
    np.testing.assert_allclose(
        result.toarray(), numpy_rank_probit(dense.astype(np.float64), l2_normalize), atol=1e-12
    )


def test_large_counts_rank_after_small_ones():
    """Counts above the counting bound (sorted) mixed with small ones (counted) in one row."""
    rng = np.random.default_rng(4)
    dense = rng.integers(0, 6, size=(30, 200)).astype(np.float32)
    dense[:, ::7] = rng.integers(COUNT_BOUND - 2, COUNT_BOUND + 50, size=dense[:, ::7].shape)
    dense[:, 3] = COUNT_BOUND + 10  # a tie among the large values
    result = rank_probit_matrix(sparse.csr_matrix(dense), dtype=np.float64)
    np.testing.assert_allclose(result.toarray(), numpy_rank_probit(dense.astype(np.float64)), atol=1e-12)
    np.testing.assert_allclose(result.toarray(), sctop_reference(dense), atol=1e-5)


def test_csc_and_dense_results_own_their_indices():
    counts = synthetic_counts()
    for matrix in (sparse.csc_matrix(counts.astype(np.float32)), counts):
        result = rank_probit_matrix(matrix, dtype=np.float64)
        np.testing.assert_allclose(result.toarray(), numpy_rank_probit(counts.astype(np.float64)), atol=1e-12)
    csr = sparse.csr_matrix(counts)
    result = rank_probit_matrix(csr)
    assert not np.shares_memory(result.deltas.indices, csr.indices)


@pytest.mark.shared_data
def test_matches_sctop_on_real_data():
    adata = read_shared("baron_human_subset")[::8].copy()  # 268 cells × 20125 genes
    result = cr.pp.rank_probit(adata, inplace=False)
    expected = sctop_reference(adata.X.toarray())
    np.testing.assert_allclose(np.asarray(result), expected, atol=1e-5)
    # sctop rounds log2(1 + x / Σx) to float32, but with integer counts no two distinct values
    # collide, so the ranks agree exactly. The remaining difference (up to ~1e-5) is sctop's norm:
    # numpy sums the float32 squares along axis 0 sequentially. Renormalising its output in
    # float64 removes it.
    renormalized = expected / np.linalg.norm(expected.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(result), renormalized, atol=1e-7)
