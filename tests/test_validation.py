import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts

from cellrep import _validation as validation


@pytest.mark.parametrize("matrix_format", ["dense", "csr", "csc"])
def test_check_counts_accepts_integer_counts(matrix_format, dtype):
    validation.check_counts(as_format(synthetic_counts(), matrix_format, dtype))


@pytest.mark.parametrize("matrix_format", ["dense", "csr", "csc"])
@pytest.mark.parametrize(
    ("bad_value", "message"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-1.0, "negative"), (0.5, "non-integer")],
)
def test_check_counts_rejects_bad_values(matrix_format, bad_value, message):
    counts = synthetic_counts().astype(np.float64)
    counts[3, 5] = bad_value
    with pytest.raises(ValueError, match=message):
        validation.check_counts(as_format(counts, matrix_format))


@st.composite
def matrices_with_bad_values(draw):
    """Small matrices of counts with some fractional, negative, NaN and infinite values."""
    shape = (draw(st.integers(0, 9)), draw(st.integers(0, 7)))
    elements = st.sampled_from([0.0, 0.0, 1.0, 3.0, 2.5, -1.0, -0.5, np.nan, np.inf, -np.inf, 1e30])
    return draw(arrays(np.float64, shape, elements=elements))


@settings(max_examples=60, deadline=None)
@given(matrices_with_bad_values(), st.sampled_from(["dense", "csr", "csc", "fortran", "strided"]))
def test_scan_values_matches_numpy(values, layout):
    matrix = {
        "fortran": np.asfortranarray(values),
        "strided": np.repeat(values, 2, axis=1)[:, ::2],  # neither C nor F contiguous
    }.get(layout)
    matrix = as_format(values, layout) if matrix is None else matrix
    stored = matrix.data if sparse.issparse(matrix) else values
    finite = np.isfinite(stored)
    scan = validation.scan_values(matrix)
    assert scan.n_non_finite == np.count_nonzero(~finite)
    assert scan.n_negative == np.count_nonzero(stored < 0)
    assert scan.n_non_integer == np.count_nonzero(np.isnan(stored) | (finite & (stored != np.round(stored))))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([np.float32, np.int64, np.int32, np.uint8, np.bool_]), st.integers(0, 200_000))
def test_scan_values_dtypes_and_chunks(dtype, size):
    """Other dtypes, and sizes spanning several parallel chunks of the flat scan."""
    values = (np.arange(size) % 7 - 2).astype(dtype)
    scan = validation.scan_values(values)
    assert scan.n_non_finite == 0
    assert scan.n_negative == np.count_nonzero(values < 0)
    assert scan.n_non_integer == 0
    if size > 1 and dtype is np.float32:
        values[-1] = np.nan
        values[0] = 0.5
        assert validation.scan_values(values) == validation.ValueScan(1, np.count_nonzero(values < 0), 2)


def test_scan_values_rejects_non_numeric():
    with pytest.raises(TypeError, match="numeric"):
        validation.scan_values(np.array([["a"]]))


def test_check_matrix_type_names_the_fix():
    with pytest.raises(TypeError, match="tocsr"):
        validation.check_matrix_type(sparse.coo_matrix(np.eye(3)))
    with pytest.raises(TypeError, match="list"):
        validation.check_matrix_type([[1, 2]])


def test_get_matrix_unknown_layer_lists_available():
    adata = make_adata(synthetic_counts())
    adata.layers["counts"] = adata.X.copy()
    with pytest.raises(ValueError, match=r"'missing' not found.*counts"):
        validation.get_matrix(adata, "missing")
    assert validation.get_matrix(adata, "counts") is adata.layers["counts"]


def test_warn_empty_cells():
    with pytest.warns(UserWarning, match="2 cells have zero counts"):
        validation.warn_empty_cells(np.array([0.0, 3.0, 0.0]))


def test_check_labels_drops_missing_and_singletons():
    adata = make_adata(synthetic_counts(n_cells=10))
    adata.obs["label"] = pd.Categorical(["a", "a", "a", "b", "b", "b", "c", None, "a", "b"])
    with pytest.warns(UserWarning, match="missing|fewer than") as record:
        usable = validation.check_labels(adata, "label")
    messages = " ".join(str(w.message) for w in record)
    assert "missing" in messages
    assert "['c']" in messages
    np.testing.assert_array_equal(usable, [True] * 6 + [False, False, True, True])


def test_check_labels_errors():
    adata = make_adata(synthetic_counts(n_cells=6))
    with pytest.raises(ValueError, match="not a column"):
        validation.check_labels(adata, "nope")
    adata.obs["one"] = "x"
    with pytest.raises(ValueError, match="at least two classes"):
        validation.check_labels(adata, "one")


def test_check_gene_overlap():
    shared = validation.check_gene_overlap(["a", "b", "c", "d"], ["d", "x", "b"])
    np.testing.assert_array_equal(shared, ["b", "d"])
    with pytest.raises(ValueError, match="Only 0 of 2"):
        validation.check_gene_overlap(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="at least 3 needed"):
        validation.check_gene_overlap(["a", "b", "c", "d"], ["a", "b"], min_overlap=0.75)
