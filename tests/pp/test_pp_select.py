"""cr.pp.select_genes: sparse ANOVA against sklearn f_classif, hvg against scanpy, hvg kernels against numpy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from sklearn.feature_selection import f_classif
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr
from cellrep._array._anova import anova_f_statistics
from cellrep._array._hvg import batch_moments
from cellrep.pp._select import top_mask


def sklearn_f(dense: np.ndarray, labels) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f_classif(np.asarray(dense, dtype=np.float64), np.asarray(labels))[0]


def test_anova_matches_sklearn(counts_adata):
    expected = sklearn_f(synthetic_counts(), counts_adata.obs["cell_type"])
    cr.pp.select_genes(counts_adata, labels_key="cell_type", n_top=10)
    scores = counts_adata.var["anova_score"].to_numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)  # NaN (constant genes) in the same places
    assert np.isnan(scores[:2]).all()
    selected = counts_adata.var["selected"].to_numpy()
    assert selected.dtype == bool
    assert selected.sum() == 10
    finite = np.where(np.isnan(expected), -np.inf, expected)
    assert finite[selected].min() >= finite[~selected].max()
    assert counts_adata.uns["select_genes"]["params"] == {
        "method": "anova",
        "n_top": 10,
        "layer": None,
        "labels_key": "cell_type",
    }


def test_anova_skips_missing_labels_and_rare_classes(matrix_format):
    dense = synthetic_counts()
    adata = make_adata(as_format(dense, matrix_format, np.float32))
    labels = adata.obs["cell_type"].astype(object).to_numpy()
    labels[:4] = None
    labels[4] = "lonely"
    adata.obs["cell_type"] = pd.Categorical(labels)
    with pytest.warns(UserWarning, match="missing 'cell_type' label|fewer than 2 cells"):
        result = cr.pp.select_genes(adata, labels_key="cell_type", n_top=5, inplace=False)
    assert isinstance(result, pd.DataFrame)
    assert list(result.columns) == ["anova_score", "selected"]
    np.testing.assert_allclose(result["anova_score"], sklearn_f(dense[5:], labels[5:]), rtol=1e-6)
    assert "anova_score" not in adata.var


def test_anova_on_pbmc68k_reduced_matches_sklearn():
    adata = sc.datasets.pbmc68k_reduced()
    expected = sklearn_f(adata.X, adata.obs["bulk_labels"].astype(str))
    cr.pp.select_genes(adata, labels_key="bulk_labels", n_top=100)
    np.testing.assert_allclose(adata.var["anova_score"], expected, rtol=1e-6)


def test_anova_constant_within_classes_is_infinite():
    matrix = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [2.0, 2.0]])
    scores = anova_f_statistics(matrix, np.array([0, 0, 1, 1]))
    assert np.isinf(scores[0])
    np.testing.assert_allclose(scores[1], sklearn_f(matrix, [0, 0, 1, 1])[1], rtol=1e-12)


def test_top_mask_ranks_nan_lowest_and_keeps_gene_order_on_ties():
    mask = top_mask(np.array([np.nan, 2.0, 5.0, 2.0, np.nan]), 3)
    np.testing.assert_array_equal(mask, [False, True, True, True, False])
    np.testing.assert_array_equal(top_mask(np.array([1.0, 1.0, 1.0]), 2), [True, True, False])


def hvg_adata(matrix_format: str, dtype, *, log: bool = False, base: float | None = None):
    """Counts (or log-normalized counts) with three batches of uneven size in ``obs['batch']``.

    With 600 genes the top 25 normalized dispersions lie in well-filled mean bins; the
    'seurat' flavour's bins of two genes give exact ties at 1/sqrt(2) whose order rounding
    decides (scanpy's own CSR and CSC results differ there).
    """
    adata = make_adata(as_format(synthetic_counts(300, 600, seed=5), matrix_format, dtype))
    adata.obs["batch"] = pd.Categorical(np.repeat(["b", "c", "a"], [150, 90, 60]))
    if log:
        cr.pp.log_normalize(adata, base=base)
    return adata


def scanpy_hvg(adata, **kwargs) -> pd.DataFrame:
    """scanpy on a CSC copy: the path that accumulates float64 squares for every dtype."""
    reference = adata.copy()
    reference.X = sparse.csc_matrix(reference.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sc.pp.highly_variable_genes(reference, inplace=False, **kwargs)


def assert_same_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns) == [*expected.columns, "selected"]
    np.testing.assert_array_equal(table.index, expected.index)
    for column in expected.columns:
        actual, wanted = table[column].to_numpy(), expected[column].to_numpy()
        assert actual.dtype == wanted.dtype, column
        if column == "mean_bin":
            np.testing.assert_array_equal(actual.astype(str), wanted.astype(str))
        elif wanted.dtype.kind == "f":
            # float32 log data: scanpy itself differs by ~2e-7 between formats on dispersions_norm
            atol = 1e-6 if column == "dispersions_norm" else 0
            np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=atol, err_msg=column)
        else:
            np.testing.assert_array_equal(actual, wanted, err_msg=column)
    np.testing.assert_array_equal(table["selected"], expected["highly_variable"])


@pytest.mark.parametrize("batch_key", [None, "batch"])
@pytest.mark.parametrize("flavor", ["seurat_v3", "seurat_v3_paper"])
def test_hvg_seurat_v3_matches_scanpy(matrix_format, dtype, flavor, batch_key):
    adata = hvg_adata(matrix_format, dtype)
    expected = scanpy_hvg(adata, flavor=flavor, n_top_genes=25, batch_key=batch_key)
    table = cr.pp.select_genes(
        adata, method="hvg", flavor=flavor, n_top=25, batch_key=batch_key, inplace=False
    )
    assert_same_table(table, expected)
    assert table["selected"].sum() == 25


@pytest.mark.parametrize("batch_key", [None, "batch"])
@pytest.mark.parametrize("flavor", ["seurat", "cell_ranger"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hvg_dispersion_flavors_match_scanpy(matrix_format, dtype, flavor, batch_key):
    adata = hvg_adata(matrix_format, dtype, log=True)
    expected = scanpy_hvg(adata, flavor=flavor, n_top_genes=25, batch_key=batch_key)
    table = cr.pp.select_genes(
        adata, method="hvg", flavor=flavor, n_top=25, batch_key=batch_key, inplace=False
    )
    assert_same_table(table, expected)


def test_hvg_seurat_honours_log_base():
    adata = hvg_adata("csr", np.float64, log=True, base=2.0)
    expected = scanpy_hvg(adata, flavor="seurat", n_top_genes=25)
    assert_same_table(
        cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=25, inplace=False), expected
    )


def test_hvg_in_place_writes_scanpy_columns_and_params():
    adata = hvg_adata("csc", np.float32)
    expected = scanpy_hvg(adata, flavor="seurat_v3", n_top_genes=15, batch_key="batch")
    cr.pp.select_genes(adata, method="hvg", n_top=15, batch_key="batch")
    for column in ("highly_variable", "highly_variable_rank", "highly_variable_nbatches"):
        np.testing.assert_array_equal(adata.var[column], expected[column])
    np.testing.assert_allclose(adata.var["variances_norm"], expected["variances_norm"], rtol=1e-6)
    np.testing.assert_array_equal(adata.var["selected"], expected["highly_variable"])
    params = adata.uns["select_genes"]["params"]
    assert (params["flavor"], params["batch_key"]) == ("seurat_v3", "batch")


def test_hvg_seurat_on_log_data_and_seurat_v3_needs_counts():
    adata = make_adata(as_format(synthetic_counts(200, 60, seed=4), "csr", np.float32))
    cr.pp.log_normalize(adata)
    expected = adata.copy()
    sc.pp.highly_variable_genes(expected, flavor="seurat", n_top_genes=12)
    table = cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=12, inplace=False)
    np.testing.assert_array_equal(table["selected"], expected.var["highly_variable"])
    before = snapshot(adata)
    with pytest.raises(ValueError, match="non-integer"):
        cr.pp.select_genes(adata, method="hvg", n_top=12)
    assert_unchanged(adata, before)


@pytest.mark.parametrize(("flavor", "n_top"), [("seurat", 10), ("cell_ranger", 2)])
def test_hvg_batched_dispersion_ties_go_to_the_gene_name_sorted_first(flavor, n_top):
    """scanpy merges batches by gene name, so a full tie at the cut goes to 'gene542' over 'gene6'."""
    counts = synthetic_counts(300, 600, seed=5)
    counts[:, 6] = counts[:, 542]
    adata = make_adata(as_format(counts, "csr", np.float64))
    adata.obs["batch"] = pd.Categorical(np.repeat(["b", "c", "a"], [150, 90, 60]))
    cr.pp.log_normalize(adata)
    expected = scanpy_hvg(adata, flavor=flavor, n_top_genes=n_top, batch_key="batch")
    table = cr.pp.select_genes(
        adata, method="hvg", flavor=flavor, n_top=n_top, batch_key="batch", inplace=False
    )
    assert_same_table(table, expected)
    np.testing.assert_array_equal(table["highly_variable"].to_numpy()[[6, 542]], [False, True])


def test_hvg_seurat_warns_when_fewer_genes_than_n_top_have_a_dispersion():
    adata = make_adata(as_format(synthetic_counts(200, 60, seed=4), "csr", np.float64))
    cr.pp.log_normalize(adata)
    expected = scanpy_hvg(adata, flavor="seurat", n_top_genes=60)
    assert expected["dispersions_norm"].isna().sum() == 2  # the two all-zero genes
    with pytest.warns(UserWarning, match="Only 58 genes have a normalized dispersion") as record:
        table = cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=60, inplace=False)
    assert record[0].filename == __file__
    assert_same_table(table, expected)
    assert table["selected"].sum() == 58


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("matrix_format", ["dense", "csr", "csc"])
def test_batch_moments_unlogging_cache_stays_exact_with_many_levels(dtype, matrix_format):
    """300 log levels in rows of 600 values: the kernels' 64-slot cache of un-logged values
    collides often (and keeps equal levels across rows), and must give numpy's values."""
    rng = np.random.default_rng(0)
    levels = np.log1p(rng.uniform(0, 50, 300))
    values = (rng.choice(levels, size=(40, 600)) * (rng.random((40, 600)) < 0.7)).astype(dtype)
    unlogged = np.expm1(values.astype(np.float64))
    if dtype == np.float32:  # un-logged in float64, rounded to float32 as scanpy's float32 expm1 is
        unlogged = unlogged.astype(np.float32).astype(np.float64)
    batches = rng.integers(-1, 2, size=40)
    sums, squares, _ = batch_moments(as_format(values, matrix_format, dtype), batches, 2, expm1_scale=1.0)
    for batch in range(2):
        rows = unlogged[batches == batch]
        np.testing.assert_allclose(sums[batch], rows.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(squares[batch], (rows**2).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flavor": "pearson_residuals"}, "flavor must be one of"),
        ({"batch_key": "missing"}, "not a column of adata.obs"),
        ({"batch_key": "batch_with_gaps"}, "missing values"),
    ],
)
def test_hvg_bad_arguments_leave_input_untouched(kwargs, message):
    adata = hvg_adata("csr", np.float32)
    adata.obs["batch_with_gaps"] = adata.obs["batch"].astype(object).where(np.arange(adata.n_obs) > 0)
    before = snapshot(adata)
    with pytest.raises(ValueError, match=message):
        cr.pp.select_genes(adata, method="hvg", n_top=10, **kwargs)
    assert_unchanged(adata, before)


@st.composite
def count_matrices(draw) -> np.ndarray:
    """Small counts with many ties, maybe an all-zero column and an empty row."""
    n_rows, n_columns = draw(st.integers(1, 9)), draw(st.integers(1, 7))
    values = draw(arrays(np.int64, (n_rows, n_columns), elements=st.integers(0, 4)))
    if draw(st.booleans()):
        values[:, draw(st.integers(0, n_columns - 1))] = 0
    if draw(st.booleans()):
        values[draw(st.integers(0, n_rows - 1))] = 0
    return values


def numpy_batch_moments(values, batches, n_batches, clip, expm1_scale):
    transformed = values.astype(np.float64)
    if expm1_scale:
        transformed = np.expm1(transformed * expm1_scale)
    sums, squares, positives = np.zeros((3, n_batches, values.shape[1]))
    for batch in range(n_batches):
        rows = transformed[batches == batch]
        clipped = np.minimum(rows, clip[batch])
        sums[batch], squares[batch] = clipped.sum(axis=0), (clipped**2).sum(axis=0)
        positives[batch] = (values[batches == batch] > 0).sum(axis=0)
    return sums, squares, positives


@settings(max_examples=40, deadline=None)
@given(
    count_matrices(),
    st.sampled_from(["dense", "csr", "csc"]),
    st.sampled_from([np.float32, np.float64, np.int64]),
    st.sampled_from([0.0, 1.0, 0.5]),
    st.booleans(),
    st.data(),
)
def test_batch_moments_kernels_match_numpy(values, matrix_format, dtype, expm1_scale, with_clip, data):
    n_batches = 3
    batches = np.array(data.draw(st.lists(st.integers(-1, 2), min_size=len(values), max_size=len(values))))
    clip = None
    if with_clip:
        clip = np.array(data.draw(arrays(np.float64, (n_batches, values.shape[1]), elements=st.floats(0, 3))))
    if np.dtype(dtype) == np.float32:
        expm1_scale = 0.0  # float32 exponentials are rounded like scanpy's; the float64 reference is not
    matrix = as_format(values, matrix_format, dtype)
    sums, squares, positives = batch_moments(
        matrix, batches, n_batches, clip=clip, expm1_scale=expm1_scale, with_positives=True
    )
    expected = numpy_batch_moments(
        values,
        batches,
        n_batches,
        np.full((n_batches, values.shape[1]), np.inf) if clip is None else clip,
        expm1_scale,
    )
    for actual, wanted in zip((sums, squares, positives), expected, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-12)
    assert batch_moments(matrix, batches, n_batches)[2] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "chi2", "labels_key": "cell_type"}, "method"),
        ({"labels_key": None}, "labels_key"),
        ({"labels_key": "missing"}, "labels_key"),
        ({"labels_key": "cell_type", "n_top": 0}, "n_top"),
    ],
)
def test_select_genes_bad_arguments(kwargs, message):
    adata = make_adata(synthetic_counts())
    before = snapshot(adata)
    with pytest.raises(ValueError, match=message):
        cr.pp.select_genes(adata, **kwargs)
    assert_unchanged(adata, before)


def test_hvg_accepts_integer_sparse_arrays():
    adata = make_adata(sparse.csr_array(synthetic_counts(200, 60, seed=4)))
    cr.pp.select_genes(adata, method="hvg", n_top=10)
    assert adata.var["selected"].sum() == 10
