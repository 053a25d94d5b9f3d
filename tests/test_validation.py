import contextlib
import warnings

import anndata as ad
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


# --- issue 11: one validation path for every public function -------------------------------------------------


def split_duplicates(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """The same matrix with every stored value split into two stored entries that sum to it (not canonical)."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    pieces = np.concatenate([matrix.data * 0.25, matrix.data * 0.75])
    # built from raw arrays: scipy's coo -> csr conversion would sum the duplicates
    order = np.argsort(np.concatenate([rows, rows]), kind="stable")
    data = pieces[order]
    indices = np.concatenate([matrix.indices, matrix.indices])[order]
    indptr = np.concatenate(
        [[0], np.cumsum(np.bincount(np.concatenate([rows, rows]), minlength=matrix.shape[0]))]
    )
    split = sparse.csr_matrix((data, indices, indptr), shape=matrix.shape)
    assert not split.has_canonical_format
    return split


def test_log_normalize_of_duplicate_entries_is_that_of_the_canonical_matrix():
    """The issue's 3 x 4 example: row 0 is [4, 0, 2, 0], each value stored as two pieces."""
    import cellrep as cr

    dense = np.array([[4, 0, 2, 0], [1, 1, 0, 3], [0, 5, 0, 1]], dtype=np.float64)
    split = split_duplicates(sparse.csr_matrix(dense))
    stored = (split.data.copy(), split.indices.copy(), split.indptr.copy())
    adata = make_adata(split)
    cr.pp.log_normalize(adata, target_sum=10)
    np.testing.assert_allclose(adata.X.toarray()[0], [2.037, 0, 1.466, 0], atol=1e-3)
    np.testing.assert_allclose(
        adata.X.toarray(), np.log1p(dense / dense.sum(1, keepdims=True) * 10), rtol=1e-6
    )
    # the user's matrix object was not modified in place
    for before, after in zip(stored, (split.data, split.indices, split.indptr), strict=True):
        np.testing.assert_array_equal(before, after)


def _unsorted(matrix):
    """The same CSR matrix with the indices of every row stored in reverse order."""
    data, indices = matrix.data.copy(), matrix.indices.copy()
    for row in range(matrix.shape[0]):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        data[start:stop], indices[start:stop] = data[start:stop][::-1], indices[start:stop][::-1]
    unsorted = sparse.csr_matrix((data, indices, matrix.indptr.copy()), shape=matrix.shape)
    unsorted.has_sorted_indices = False
    return unsorted


def _results(adata):
    """Every public pp / tl function of issue 11 on ``adata``, as dense arrays."""
    import cellrep as cr

    def fresh():
        if not (sparse.issparse(adata.X) and adata.X.dtype == np.float16):
            return adata.copy()
        matrix = adata.X.astype(np.float32)  # scipy cannot copy float16 sparse matrices
        matrix.data = matrix.data.astype(np.float16)
        return ad.AnnData(matrix, obs=adata.obs.copy(), var=adata.var.copy())

    def run(function, **kwargs):
        copy = fresh()
        function(copy, **kwargs)
        return copy

    results = {}
    results["log_normalize"] = run(cr.pp.log_normalize, target_sum=10).X
    results["normalize_total"] = run(cr.pp.normalize_total, target_sum=10).X
    results["log1p"] = run(cr.pp.log1p).X
    results["rank_probit"] = cr.pp.rank_probit(fresh(), inplace=False, dense=True)
    results["scale"] = run(cr.pp.scale, zero_center=False).X
    results["pearson"] = cr.pp.pearson_residuals(fresh(), inplace=False, dense=True)
    results["anova"] = cr.pp.select_genes(fresh(), labels_key="cell_type", inplace=False)["anova_score"]
    hvg = cr.pp.select_genes(fresh(), method="hvg", n_top=10, inplace=False)
    results["hvg"] = hvg[["means", "variances", "variances_norm"]].to_numpy()
    results["pca"] = np.abs(run(cr.tl.pca, n_comps=3).obsm["X_pca"])
    results["sctop"] = cr.tl.sctop_basis(fresh(), labels_key="cell_type", inplace=False).to_numpy()
    embedded = run(cr.tl.linear_embedding, labels_key="cell_type", n_genes=20, n_comps=3)
    results["linear_embedding"] = np.abs(embedded.obsm[next(k for k in embedded.obsm if k.startswith("X_"))])
    return {
        name: np.asarray(value.toarray() if sparse.issparse(value) else value, dtype=np.float64)
        for name, value in results.items()
    }


@pytest.mark.parametrize("kind", ["duplicates", "unsorted", "csc_duplicates"])
def test_every_function_gives_the_canonical_result(kind):
    counts = synthetic_counts(n_cells=60, n_genes=40).astype(np.float64)
    canonical = make_adata(sparse.csr_matrix(counts))
    if kind == "duplicates":
        awkward = split_duplicates(sparse.csr_matrix(counts))
    elif kind == "unsorted":
        awkward = _unsorted(sparse.csr_matrix(counts))
    else:
        awkward = split_duplicates(sparse.csr_matrix(counts.T)).T.tocsc()
        awkward = sparse.csc_matrix((awkward.data, awkward.indices, awkward.indptr), shape=counts.shape)
        assert not awkward.has_canonical_format
    adata = make_adata(awkward)
    stored = awkward.data.copy()
    with _no_check():
        expected, got = _results(canonical), _results(adata)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(awkward.data, stored)


@contextlib.contextmanager
def _no_check():
    """Ignore warnings (empty cells, few genes) that both the awkward and the canonical input give."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("matrix_format", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float16, np.bool_, np.uint8, np.int16, np.uint32])
def test_loadable_dtypes_give_the_float64_result(matrix_format, dtype):
    """float16 used to fail inside numba (NotImplementedError); every loadable dtype now works."""
    counts = synthetic_counts(n_cells=60, n_genes=40)
    counts = (counts > 0) if dtype is np.bool_ else np.minimum(counts, 200)
    expected = _results(make_adata(as_format(counts.astype(np.float64), matrix_format)))
    awkward = as_format(counts.astype(np.float32 if dtype is np.float16 else dtype), matrix_format)
    if dtype is np.float16 and matrix_format == "csr":
        awkward.data = awkward.data.astype(np.float16)  # scipy refuses to build it, h5ad files can hold it
    with _no_check():
        got = _results(make_adata(awkward.astype(dtype) if matrix_format == "dense" else awkward))
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-3, atol=2e-3, err_msg=name)


def test_float16_becomes_float32():
    import cellrep as cr

    adata = make_adata(synthetic_counts().astype(np.float16))
    cr.pp.log_normalize(adata)
    assert adata.X.dtype == np.float32


def test_non_numeric_dtype_names_the_supported_ones():
    with pytest.raises(TypeError, match="Supported: float32, float64"):
        validation.as_kernel_input(np.array([["a", "b"]], dtype=object))


def test_backed_anndata_says_what_works(tmp_path):
    import anndata as ad

    import cellrep as cr

    path = tmp_path / "backed.h5ad"
    make_adata(sparse.csr_matrix(synthetic_counts().astype(np.float32))).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        for call in (cr.pp.log_normalize, cr.pp.rank_probit, lambda a: cr.tl.pca(a, n_comps=2)):
            with pytest.raises(TypeError, match=r"adata\.to_memory\(\)") as error:
                call(backed)
            assert "tocsr" not in str(error.value)
            assert "read_elem_lazy" in str(error.value)
    finally:
        backed.file.close()


def test_counts_only_in_raw_are_pointed_to():
    import cellrep as cr

    adata = make_adata(synthetic_counts().astype(np.float32))
    adata.raw = adata.copy()  # anndata's raw would otherwise share X's memory, logged in place below
    cr.pp.log_normalize(adata)
    cr.pp.scale(adata)  # negative values now
    with pytest.raises(ValueError, match=r"adata\.raw holds raw counts.*raw\.to_adata\(\)"):
        cr.pp.rank_probit(adata)
    with pytest.raises(ValueError, match=r"adata\.raw holds raw counts"):
        cr.pp.pearson_residuals(adata)


def test_log_data_warning_of_pearson_residuals_points_to_raw():
    """Log data (non-negative, non-integer) only warns in pearson_residuals; the warning names adata.raw too."""
    import cellrep as cr

    adata = make_adata(synthetic_counts().astype(np.float32))
    adata.raw = adata.copy()
    cr.pp.log_normalize(adata)
    with pytest.warns(UserWarning, match=r"non-integer values were found\. adata\.raw holds raw counts"):
        cr.pp.pearson_residuals(adata)


@pytest.mark.parametrize("matrix_format", ["dense", "csr"])
def test_near_integer_counts_are_accepted_within_the_tolerance(matrix_format):
    import cellrep as cr

    counts = synthetic_counts().astype(np.float64)
    noisy = counts + np.where(counts > 0, 1e-7, 0.0)  # 1 + 1e-7 and the like
    got = cr.pp.select_genes(
        make_adata(as_format(noisy, matrix_format)), method="hvg", n_top=10, inplace=False
    )
    expected = cr.pp.select_genes(
        make_adata(as_format(counts, matrix_format)), method="hvg", n_top=10, inplace=False
    )
    np.testing.assert_array_equal(got["highly_variable"], expected["highly_variable"])
    validation.check_counts(as_format(noisy, matrix_format))
    assert validation.COUNT_TOLERANCE == 1e-6
    far = counts.copy()
    far[3, 5] = 2.001
    with pytest.raises(ValueError, match="non-integer"):
        validation.check_counts(as_format(far, matrix_format))


def test_sctop_basis_warns_on_log_data():
    import cellrep as cr

    adata = make_adata(synthetic_counts().astype(np.float32))
    cr.pp.log_normalize(adata)
    with pytest.warns(UserWarning, match="sctop_basis expects raw counts"):
        cr.tl.sctop_basis(adata, labels_key="cell_type")


def test_hvg_after_log_normalize_names_the_flavor():
    import cellrep as cr

    adata = make_adata(synthetic_counts().astype(np.float32))
    cr.pp.log_normalize(adata)
    with pytest.raises(ValueError, match=r"use flavor='seurat'.*flavor='cell_ranger'"):
        cr.pp.select_genes(adata, method="hvg")
    cr.pp.select_genes(adata, method="hvg", flavor="seurat", n_top=10)
    assert adata.var["selected"].sum() >= 10  # the seurat flavour keeps ties, as scanpy
