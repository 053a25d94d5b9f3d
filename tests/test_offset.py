"""OffsetSparseMatrix (sparse deltas + one constant per row) against the same dense numpy matrix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.linalg import LinearOperator
from tests.conftest import as_format, synthetic_counts

from cellrep._array._offset import OffsetSparseMatrix
from cellrep._array._pca_operator import column_mean_var


@pytest.fixture(params=["csr", "csc"])
def deltas_format(request) -> str:
    return request.param


@pytest.fixture(params=[np.float32, np.float64, np.int64], ids=lambda dtype: np.dtype(dtype).name)
def value_dtype(request):
    return request.param


@pytest.fixture
def parts(deltas_format, value_dtype):
    """``(OffsetSparseMatrix, its dense values in float64)`` with an empty row and an all-zero gene."""
    rng = np.random.default_rng(3)
    deltas = synthetic_counts(12, 9, seed=4) - 2 * synthetic_counts(12, 9, seed=5)
    deltas[4] = 0
    offsets = rng.integers(-3, 4, size=12) if np.dtype(value_dtype).kind == "i" else rng.normal(size=12)
    matrix = OffsetSparseMatrix(as_format(deltas, deltas_format, value_dtype), offsets.astype(value_dtype))
    dense = deltas.astype(np.float64) + offsets.astype(value_dtype).astype(np.float64)[:, None]
    return matrix, dense


def tolerance(dtype) -> dict:
    return {"rtol": 1e-5, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def test_construction_keeps_csr_and_dtype(parts, value_dtype):
    matrix, dense = parts
    assert matrix.deltas.format == "csr"
    assert matrix.dtype == np.dtype(value_dtype)
    assert matrix.row_offsets.dtype == np.dtype(value_dtype)
    assert matrix.shape == dense.shape
    assert matrix.ndim == 2
    deltas = matrix.deltas
    assert (
        matrix.nbytes
        == deltas.data.nbytes + deltas.indices.nbytes + deltas.indptr.nbytes + matrix.row_offsets.nbytes
    )
    assert (
        repr(matrix)
        == f"OffsetSparseMatrix(shape={dense.shape}, nnz={deltas.nnz}, dtype={np.dtype(value_dtype)})"
    )


def test_toarray_and_array_protocol(parts, value_dtype):
    matrix, dense = parts
    np.testing.assert_allclose(matrix.toarray(), dense, **tolerance(value_dtype))
    np.testing.assert_allclose(np.asarray(matrix), dense, **tolerance(value_dtype))
    assert np.asarray(matrix, dtype=np.float64).dtype == np.float64


def test_matmul_vector_and_matrix(parts, value_dtype):
    matrix, dense = parts
    rng = np.random.default_rng(0)
    vector, block = rng.normal(size=9), rng.normal(size=(9, 4))
    np.testing.assert_allclose(matrix.matmul(vector), dense @ vector, **tolerance(value_dtype))
    np.testing.assert_allclose(matrix @ block, dense @ block, **tolerance(value_dtype))
    assert (matrix @ block).shape == (12, 4)


def test_rmatmul_vector_and_matrix(parts, value_dtype):
    matrix, dense = parts
    rng = np.random.default_rng(1)
    vector, block = rng.normal(size=12), rng.normal(size=(12, 3))
    np.testing.assert_allclose(matrix.rmatmul(vector), dense.T @ vector, **tolerance(value_dtype))
    np.testing.assert_allclose(matrix.rmatmul(block), dense.T @ block, **tolerance(value_dtype))
    left = rng.normal(size=(2, 12))
    np.testing.assert_allclose(left @ matrix, left @ dense, **tolerance(value_dtype))


def test_column_moments(parts, value_dtype):
    matrix, dense = parts
    for ddof in (0, 1):
        mean, variance = column_mean_var(matrix, ddof=ddof)
        np.testing.assert_allclose(mean, dense.mean(axis=0), **tolerance(value_dtype))
        np.testing.assert_allclose(variance, dense.var(axis=0, ddof=ddof), **tolerance(value_dtype))
    assert mean.dtype == np.float64


@pytest.mark.parametrize(
    "key",
    [
        slice(2, 7),
        np.array([0, 5, 5, 11]),
        (slice(None), np.array([1, 3, 8])),
        (np.arange(12) % 3 == 0, slice(2, None)),
        (np.array([4, 1]), np.array([0, 2])),
    ],
    ids=["row slice", "row indices", "column indices", "row mask + column slice", "rows + columns"],
)
def test_getitem_subsets_rows_and_columns(parts, value_dtype, key):
    matrix, dense = parts
    subset = matrix[key]
    assert isinstance(subset, OffsetSparseMatrix)
    rows, cols = key if isinstance(key, tuple) else (key, slice(None))
    np.testing.assert_allclose(subset.toarray(), dense[rows][:, cols], **tolerance(value_dtype))


def test_linear_operator(parts, value_dtype):
    matrix, dense = parts
    operator = matrix.as_linear_operator()
    assert isinstance(operator, LinearOperator)
    assert operator.shape == dense.shape
    rng = np.random.default_rng(2)
    vector, left = rng.normal(size=9), rng.normal(size=12)
    np.testing.assert_allclose(operator.matvec(vector), dense @ vector, **tolerance(value_dtype))
    np.testing.assert_allclose(operator.rmatvec(left), dense.T @ left, **tolerance(value_dtype))


def test_rejects_dense_deltas_and_wrong_offsets():
    with pytest.raises(TypeError, match="scipy sparse"):
        OffsetSparseMatrix(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="row_offsets has 2 entries but deltas has 3 rows"):
        OffsetSparseMatrix(sparse.csr_matrix((3, 2)), np.zeros(2))
