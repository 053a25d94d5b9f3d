"""Property tests: every pp kernel (through its array function) against a plain numpy reference.

Random shapes, empty rows, all-zero columns and many ties (small integer values), in dense,
CSR and CSC form and float32 / float64 / int64 dtype.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from sklearn.feature_selection import f_classif
from tests.conftest import as_format
from tests.pp.pp_reference import to_dense

from cellrep._array._anova import anova_f_statistics
from cellrep._array._moments import column_sums, grouped_column_moments, row_sums
from cellrep._array._normalize import csr_count_row_stats, log1p_matrix, normalize_rows
from cellrep._array._pearson import pearson_residuals_matrix
from cellrep._array._scale import column_mean_std, scale_matrix
from cellrep._kernels._normalize import LOG_TABLE_SIZE
from cellrep._kernels._validation import SCAN_BLOCK, scan_flat

SETTINGS = settings(max_examples=30, deadline=None)
FORMATS = st.sampled_from(["dense", "csr", "csc"])
DTYPES = st.sampled_from([np.float32, np.float64, np.int64])


SMALL_COUNTS = st.integers(0, 4)


@st.composite
def count_matrices(draw, min_rows: int = 1, elements=SMALL_COUNTS, dtype=np.int64):
    n_rows = draw(st.integers(min_rows, 9))
    n_columns = draw(st.integers(1, 7))
    values = draw(arrays(dtype, (n_rows, n_columns), elements=elements))
    if draw(st.booleans()):
        values[:, draw(st.integers(0, n_columns - 1))] = 0  # an all-zero column
    if draw(st.booleans()):
        values[draw(st.integers(0, n_rows - 1))] = 0  # an empty row
    return values


def tolerance(dtype) -> dict:
    return {"rtol": 2e-6, "atol": 1e-6} if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


@SETTINGS
@given(count_matrices(), FORMATS, DTYPES)
def test_row_and_column_sums(values, matrix_format, dtype):
    matrix = as_format(values, matrix_format, dtype)
    np.testing.assert_array_equal(row_sums(matrix), values.sum(axis=1))
    np.testing.assert_array_equal(column_sums(matrix), values.sum(axis=0))


@SETTINGS
@given(count_matrices(), FORMATS, DTYPES, st.data())
def test_grouped_column_moments(values, matrix_format, dtype, data):
    groups = np.array(data.draw(st.lists(st.integers(-1, 2), min_size=len(values), max_size=len(values))))
    sums, squares = grouped_column_moments(as_format(values, matrix_format, dtype), groups, 3)
    for group in range(3):
        np.testing.assert_array_equal(sums[group], values[groups == group].sum(axis=0))
    np.testing.assert_array_equal(squares, (values[groups >= 0] ** 2).sum(axis=0))


@SETTINGS
@given(
    count_matrices(),
    FORMATS,
    DTYPES,
    st.sampled_from([None, 10.0]),
    st.booleans(),
    st.sampled_from([None, 2.0]),
    st.booleans(),
)
def test_normalize_rows(values, matrix_format, dtype, target_sum, log, base, copy):
    matrix = as_format(values, matrix_format, dtype)
    original = to_dense(matrix).copy()
    result, totals, used = normalize_rows(matrix, target_sum=target_sum, log=log, base=base, copy=copy)
    row_totals = values.sum(axis=1).astype(np.float64)
    nonzero = row_totals[row_totals > 0]
    expected_target = target_sum if target_sum is not None else (np.median(nonzero) if nonzero.size else 1.0)
    factors = np.divide(expected_target, row_totals, out=np.zeros_like(row_totals), where=row_totals > 0)
    expected = values * factors[:, None]
    if log:
        expected = np.log1p(expected) / (np.log(base) if base else 1.0)
    assert used == expected_target
    np.testing.assert_array_equal(totals, row_totals)
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_allclose(to_dense(result), expected, **tolerance(result.dtype))
    if copy:
        np.testing.assert_array_equal(to_dense(matrix), original)


# rows mixing the log table path (small integers) with the direct path (fractional or >= 256)
MIXED_VALUES = st.sampled_from([0.0, 0.0, 1.0, 2.0, 3.0, 2.5, 255.0, 256.0, 3000.0, 1e-3])


@SETTINGS
@given(
    count_matrices(elements=MIXED_VALUES, dtype=np.float64),
    FORMATS,
    st.sampled_from([np.float32, np.float64]),
)
def test_log_normalize_table_and_direct_paths(values, matrix_format, dtype):
    values = values.astype(dtype)
    for target_sum in (1e4, None):
        result, _, used = normalize_rows(
            as_format(values, matrix_format), target_sum=target_sum, log=True, copy=True
        )
        row_totals = values.sum(axis=1, dtype=np.float64)
        factors = np.divide(used, row_totals, out=np.zeros_like(row_totals), where=row_totals > 0)
        expected = np.log1p(values * factors[:, None])
        np.testing.assert_allclose(to_dense(result), expected, **tolerance(dtype))


# every kind of stored value the CSR row statistics must tell apart; 1e10 is above 2**32
EXTREME_FLOATS = st.sampled_from(
    [0.0, -0.0, 1.0, 2.0, 2.0, 255.0, 256.0, 3000.0, 1e10, 2.5, 1e-3, -1.0, np.nan, np.inf, -np.inf]
)
EXTREME_INTEGERS = st.sampled_from([0, 1, 2, 2, 255, 256, 3000, 10**10, -1])


@st.composite
def csr_with_stored_values(draw, dtype):
    """CSR matrix of EXTREME_* stored values (explicit zeros and -0.0 included), with empty rows.

    An optional long row of small counts with a few EXTREME_* values is long enough for a
    full-size log table (LOG_TABLE_SIZE entries), so it takes the table-and-log path.
    """
    elements = EXTREME_INTEGERS if np.dtype(dtype).kind == "i" else EXTREME_FLOATS
    row_lengths = draw(st.lists(st.integers(0, 6), min_size=1, max_size=8))
    data = draw(st.lists(elements, min_size=sum(row_lengths), max_size=sum(row_lengths)))
    if draw(st.booleans()):
        long_row = list(np.arange(LOG_TABLE_SIZE + 44) % 4)
        long_row[0] = draw(st.sampled_from([LOG_TABLE_SIZE - 1, LOG_TABLE_SIZE, 3000, 10**10]))  # table size
        for position, value in draw(
            st.lists(st.tuples(st.integers(0, len(long_row) - 1), elements), max_size=3)
        ):
            long_row[position] = value
        row = draw(st.integers(0, len(row_lengths)))
        offset = sum(row_lengths[:row])
        data = data[:offset] + long_row + data[offset:]
        row_lengths.insert(row, len(long_row))
    indices = np.concatenate([np.arange(length) for length in row_lengths])
    indptr = np.concatenate([[0], np.cumsum(row_lengths)])
    shape = (len(row_lengths), max(row_lengths) + 1)
    return sparse.csr_matrix((np.array(data).astype(dtype), indices, indptr), shape=shape)


def csr_rows(matrix) -> list[np.ndarray]:
    return np.split(matrix.data, matrix.indptr[1:-1])


@SETTINGS
@given(st.sampled_from([np.float32, np.float64, np.int64]).flatmap(csr_with_stored_values))
def test_csr_count_row_stats(matrix):
    rows = csr_rows(matrix)
    with np.errstate(invalid="ignore"):  # inf - inf, also inside the kernel without the JIT
        stats = csr_count_row_stats(matrix)
        expected_totals = [row.sum(dtype=np.float64) for row in rows]
    np.testing.assert_allclose(stats.totals, expected_totals, rtol=1e-12, equal_nan=True)
    expected_max_counts = [
        min(row.max(initial=0), LOG_TABLE_SIZE)
        if not np.signbit(row).any() and np.all(row == np.floor(row))  # NaN fails, +inf passes
        else -1
        for row in rows
    ]
    np.testing.assert_array_equal(stats.max_counts, expected_max_counts)
    assert stats.valid == bool(np.all(np.isfinite(matrix.data)) and not np.signbit(matrix.data).any())


@SETTINGS
@given(
    st.sampled_from([np.float32, np.float64, np.int64]).flatmap(csr_with_stored_values),
    st.sampled_from([None, 1e4]),
    st.sampled_from([None, 2.0]),
)
def test_log_normalize_csr_values_below_and_above_the_table(matrix, target_sum, base):
    """Table rows, rows with counts >= LOG_TABLE_SIZE or >= 2**32, fractional, NaN, inf and negative values."""
    with np.errstate(all="ignore"):
        result, totals, used = normalize_rows(matrix, target_sum=target_sum, log=True, base=base, copy=True)
        factors = np.divide(used, totals, out=np.zeros_like(totals), where=totals > 0)
        expected = [
            np.log1p(row * factor) / np.log(base or np.e)
            for row, factor in zip(csr_rows(matrix), factors, strict=True)
        ]
    assert result.dtype == (np.float64 if matrix.dtype == np.float64 else np.float32)
    np.testing.assert_array_equal(result.indptr, matrix.indptr)
    np.testing.assert_allclose(
        result.data, np.concatenate(expected), equal_nan=True, **tolerance(result.dtype)
    )


@SETTINGS
@given(
    st.integers(0, 3 * SCAN_BLOCK + 2), st.lists(st.tuples(st.integers(0, 10**9), EXTREME_FLOATS), max_size=6)
)
def test_scan_flat_counts_across_blocks(size, placed):
    """The validation scan counts by blocks of SCAN_BLOCK values; bad values anywhere, block edges included."""
    values = np.arange(size, dtype=np.float32) % 5
    for position, value in placed:
        if size:
            values[position % size] = value
    finite = np.isfinite(values)
    expected = (
        np.count_nonzero(~finite),
        np.count_nonzero(values < 0),
        np.count_nonzero(np.isnan(values) | (finite & (values != np.floor(values)))),
    )
    assert tuple(int(count) for count in scan_flat(values)[:3]) == expected


@SETTINGS
@given(count_matrices(), FORMATS, DTYPES, st.sampled_from([None, 10.0]))
def test_log1p_matrix(values, matrix_format, dtype, base):
    result = log1p_matrix(as_format(values, matrix_format, dtype), base=base)
    expected = np.log1p(values) / (np.log(base) if base else 1.0)
    np.testing.assert_allclose(to_dense(result), expected, **tolerance(dtype))


@SETTINGS
@given(count_matrices(), FORMATS, DTYPES, st.booleans(), st.sampled_from([None, 1.0]))
def test_scale_matrix(values, matrix_format, dtype, zero_center, max_value):
    sparse_input = matrix_format != "dense"
    if sparse_input and zero_center:
        max_value = None  # cannot clip with implicit centring (tested in test_pp_scale)
    result, mean, std, implicit = scale_matrix(
        as_format(values, matrix_format, dtype), zero_center=zero_center, max_value=max_value
    )
    expected_mean = values.mean(axis=0)
    expected_std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    expected_std[expected_std == 0] = 1.0
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-10)
    expected = (values - (expected_mean if zero_center else 0.0)) / expected_std
    if max_value is not None:
        expected = np.clip(expected, -max_value if zero_center else None, max_value)
    dense = to_dense(result) - (mean / std if implicit else 0.0)
    assert implicit == (sparse_input and zero_center)
    np.testing.assert_allclose(dense, expected, **tolerance(dtype))
    np.testing.assert_allclose(column_mean_std(values, ddof=0)[1], values.std(axis=0), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(count_matrices(), FORMATS, DTYPES, st.sampled_from([1.0, 100.0]), st.sampled_from([None, 0.5]))
def test_pearson_residuals_matrix(values, matrix_format, dtype, theta, clip):
    result = pearson_residuals_matrix(
        as_format(values, matrix_format, dtype), theta=theta, clip=clip, chunk_size=4
    )
    total = values.sum() or 1.0
    mu = np.outer(values.sum(axis=1), values.sum(axis=0)) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(mu > 0, (values - mu) / np.sqrt(mu + mu**2 / theta), 0.0)
    bound = np.sqrt(len(values)) if clip is None else clip
    np.testing.assert_allclose(result, np.clip(expected, -bound, bound), **tolerance(dtype))


@SETTINGS
@given(count_matrices(min_rows=4), FORMATS, DTYPES, st.data())
def test_anova_f_statistics(values, matrix_format, dtype, data):
    n_rows = len(values)
    groups = np.array(data.draw(st.permutations([0, 1, *([-1, 0, 1, 2] * 3)][:n_rows])))
    if (groups >= 0).sum() <= len(np.unique(groups[groups >= 0])):
        return
    groups = np.unique(groups, return_inverse=True)[1] - (1 if (groups < 0).any() else 0)
    scores = anova_f_statistics(as_format(values, matrix_format, dtype), groups)
    used = groups >= 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = f_classif(values[used].astype(np.float64), groups[used])[0]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
