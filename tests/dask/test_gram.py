"""The one-pass Gram matrix of the dask PCA: numba tiles vs numpy's dense XᵀX."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from cellrep._array._dask_pca import _block_gram, _symmetric
from cellrep._kernels._pca_moments import csr_gram_upper


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(0, 30),
    n_cols=st.integers(1, 25),
    density=st.floats(0.0, 1.0),
    tile_rows=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_tiles_add_up_to_the_upper_triangle(n_rows, n_cols, density, tile_rows, seed):
    x = sparse.random(n_rows, n_cols, density=density, format="csr", random_state=seed, dtype=np.float32)
    gram = np.zeros((n_cols, n_cols))
    csr_gram_upper(x.data, x.indices, x.indptr, tile_rows, gram)
    dense = x.toarray().astype(np.float64)
    np.testing.assert_allclose(gram, np.triu(dense.T @ dense), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("kind", ["csr", "csr_unsorted", "dense"])
def test_block_gram_of_every_chunk_kind(kind, dtype):
    rng = np.random.default_rng(0)
    dense = (rng.poisson(0.4, (40, 12)) * rng.integers(1, 5, (40, 12))).astype(dtype)
    block = dense if kind == "dense" else sparse.csr_matrix(dense)
    if kind == "csr_unsorted":  # reverse every row's entries
        for row in range(block.shape[0]):
            start, stop = block.indptr[row], block.indptr[row + 1]
            block.indices[start:stop] = block.indices[start:stop][::-1].copy()
            block.data[start:stop] = block.data[start:stop][::-1].copy()
        block.has_sorted_indices = False
    upper, sums = _block_gram(block)
    expected = dense.astype(np.float64)
    np.testing.assert_allclose(_symmetric(upper), expected.T @ expected, rtol=1e-12)
    np.testing.assert_allclose(sums, expected.sum(axis=0), rtol=1e-12)
