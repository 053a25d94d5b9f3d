"""Property-based fuzzing of the public ``cr.pp`` and ``cr.tl`` API on awkward AnnData objects.

Every call ends one of two ways:

- a result equal to the same call on the canonical float64 dense copy of the input, within
  ``RTOL`` / ``ATOL`` (float32 arithmetic of float32 / float16 / bool inputs);
- a ``ValueError`` or ``TypeError`` that the canonical copy raises as well, with a message
  that says what to do, and the input left bit-for-bit unchanged (X, layers, obs, var, uns).

The number of examples is bounded for CI; ``CELLREP_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_api.py``
runs a longer search.
"""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

import cellrep as cr

MAX_EXAMPLES = int(os.environ.get("CELLREP_FUZZ_EXAMPLES", "30"))
RTOL = 2e-3
ATOL = 2e-4
FORMATS = ("dense", "csr_matrix", "csc_matrix", "csr_array")
DTYPES = (np.float16, np.float32, np.float64, np.int32, np.int64, np.uint16, np.bool_)
# words of advice every error message of the public API contains at least one of
ADVICE = (
    "pass",
    "use",
    "run",
    "convert",
    "drop",
    "check",
    "remove",
    "choose",
    "load",
    "fill",
    "filter",
    "lower",
    "make",
)


def _split_duplicates(matrix):
    """The same values with every stored entry split into two stored pieces (not canonical)."""
    matrix = matrix.copy()
    major = np.repeat(np.arange(len(matrix.indptr) - 1), np.diff(matrix.indptr))
    order = np.argsort(np.concatenate([major, major]), kind="stable")
    data = np.concatenate([matrix.data * 0.5, matrix.data - matrix.data * 0.5])[order]
    indices = np.concatenate([matrix.indices, matrix.indices])[order]
    indptr = np.concatenate([[0], np.cumsum(2 * np.diff(matrix.indptr))])
    return type(matrix)((data, indices, indptr), shape=matrix.shape)


def _reverse_indices(matrix):
    matrix = matrix.copy()
    for major in range(len(matrix.indptr) - 1):
        start, stop = matrix.indptr[major], matrix.indptr[major + 1]
        matrix.data[start:stop] = matrix.data[start:stop][::-1].copy()
        matrix.indices[start:stop] = matrix.indices[start:stop][::-1].copy()
    matrix.has_sorted_indices = False
    return matrix


@st.composite
def awkward_anndata(draw):
    """A small AnnData of counts with an awkward layout, and its canonical float64 dense copy."""
    n_cells, n_genes = draw(st.integers(8, 30)), draw(st.integers(6, 24))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.8, 2.0, size=n_genes), size=(n_cells, n_genes)).astype(np.float64)
    counts[rng.random((n_cells, n_genes)) < draw(st.floats(0.0, 0.7))] = 0
    if draw(st.booleans()):
        counts[draw(st.integers(0, n_cells - 1))] = 0  # an empty cell
    if draw(st.booleans()):
        counts[:, draw(st.integers(0, n_genes - 1))] = 0  # an empty gene
    dtype = draw(st.sampled_from(DTYPES))
    if dtype is np.bool_:
        counts = (counts > 0).astype(np.float64)
    matrix_format = draw(st.sampled_from(FORMATS))
    if matrix_format == "dense":
        matrix = counts.astype(dtype)
    else:
        matrix = getattr(sparse, matrix_format)(counts.astype(np.float32 if dtype is np.float16 else dtype))
        layout = draw(st.sampled_from(["canonical", "duplicates", "unsorted"]))
        if layout == "duplicates" and dtype in (np.float32, np.float64):
            matrix = _split_duplicates(matrix)
        elif layout == "unsorted":
            matrix = _reverse_indices(matrix)
        if dtype is np.float16:
            matrix.data = matrix.data.astype(np.float16)  # scipy cannot build it; files can hold it

    labels = rng.choice(["a", "b", "c"], size=n_cells).astype(object)
    labels[draw(st.integers(0, n_cells - 1))] = "singleton"
    labels[rng.random(n_cells) < draw(st.floats(0.0, 0.3))] = np.nan
    label_dtype = draw(st.sampled_from(["category", "object", "string"]))
    obs = pd.DataFrame({"cell_type": pd.Series(labels).astype(label_dtype).to_numpy()})
    obs["batch"] = pd.array(rng.integers(0, 2, n_cells), dtype="Int64")  # pandas nullable
    names = [f"cell{i}" for i in range(n_cells)]
    if draw(st.booleans()):
        names[1] = names[0]  # duplicated obs names
    obs.index = names
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.AnnData(matrix, obs=obs, var=var)
        reference = ad.AnnData(counts.copy(), obs=obs.copy(), var=var.copy())
        # a view of most cells (scipy cannot index float16 sparse matrices, so no views of those)
        if draw(st.booleans()) and not (dtype is np.float16 and matrix_format != "dense"):
            keep = np.arange(n_cells) != draw(st.integers(0, n_cells - 1))
            adata, reference = adata[keep], reference[keep].copy()
    return adata, reference


def _fresh(adata):
    """An independent copy (scipy cannot copy float16 sparse matrices, so those are rebuilt)."""
    if sparse.issparse(adata.X) and adata.X.dtype == np.float16:
        matrix = adata.X.astype(np.float32)
        matrix.data = matrix.data.astype(np.float16)
        return ad.AnnData(
            matrix, obs=adata.obs.copy(), var=adata.var.copy(), uns=copy.deepcopy(dict(adata.uns))
        )
    return adata.copy()


def _dense(value) -> np.ndarray:
    value = value.toarray() if sparse.issparse(value) else value
    return np.asarray(value, dtype=np.float64)


def _pca_variance(adata):
    cr.tl.pca(adata, n_comps=2)
    return adata.uns["pca"]["variance"]


def _linear(adata):
    cr.tl.linear_embedding(adata, labels_key="cell_type", n_genes=5, n_comps=2)
    fitted = adata.uns["linear"]
    return np.concatenate([fitted["means"], fitted["scales"], fitted["component_scales"]])


def _with_x(function):
    def run(adata):
        function(adata)
        return adata.X

    return run


# each call returns what is compared; calls that write in place run on an independent copy
CALLS = {
    "normalize_total": _with_x(lambda a: cr.pp.normalize_total(a, target_sum=100)),
    "log1p": _with_x(cr.pp.log1p),
    "log_normalize": _with_x(lambda a: cr.pp.log_normalize(a, target_sum=100)),
    "scale": _with_x(lambda a: cr.pp.scale(a, zero_center=False)),
    "rank_probit": lambda a: cr.pp.rank_probit(a, inplace=False, dense=True),
    "pearson_residuals": lambda a: cr.pp.pearson_residuals(a, inplace=False, dense=True),
    "anova": lambda a: cr.pp.select_genes(a, labels_key="cell_type", n_top=3, inplace=False)["anova_score"],
    "hvg_seurat_v3": lambda a: cr.pp.select_genes(a, method="hvg", n_top=3, inplace=False)["variances_norm"],
    "hvg_cell_ranger": lambda a: cr.pp.select_genes(
        a, method="hvg", flavor="cell_ranger", batch_key="batch", n_top=3, inplace=False
    )["dispersions_norm"],
    "pca": _pca_variance,
    "sctop_basis": lambda a: cr.tl.sctop_basis(a, labels_key="cell_type", inplace=False),
    "linear_embedding": _linear,
}


def _state(adata) -> bytes:
    """Everything a failed call must leave unchanged, bit for bit."""
    matrix = adata.X
    if sparse.issparse(matrix):
        x = (
            type(matrix).__name__,
            matrix.dtype.str,
            matrix.data.tobytes(),
            matrix.indices.tobytes(),
            matrix.indptr.tobytes(),
        )
    else:
        x = (type(matrix).__name__, matrix.dtype.str, np.ascontiguousarray(matrix).tobytes())
    return pickle.dumps((x, dict(adata.layers), adata.obs, adata.var, dict(adata.uns)))


def _outcome(function, adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _dense(function(adata)), None
        except (ValueError, TypeError) as error:
            return None, error


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(awkward_anndata(), st.sampled_from(sorted(CALLS)))
def test_public_api_on_awkward_anndata(data, name):
    adata, reference = data
    function = CALLS[name]
    expected, expected_error = _outcome(function, _fresh(reference))
    before = _state(adata)
    got, error = _outcome(
        function, _fresh(adata) if name in ("normalize_total", "log1p", "log_normalize", "scale") else adata
    )
    if error is not None:
        assert _state(adata) == before, f"{name} changed its input before raising {error!r}"
        assert expected_error is not None, f"{name} raised {error!r} but works on the canonical float64 copy"
        assert type(error) is type(expected_error), (error, expected_error)
        assert any(word in str(error).lower() for word in ADVICE), f"{name}: no advice in {error}"
        return
    assert expected_error is None, (
        f"{name} succeeded on awkward input but raised {expected_error!r} on the canonical copy"
    )
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_call_runs_on_plain_counts(name):
    """The fuzzed calls themselves work: on plain CSR float32 counts none raises."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(1.0, 3.0, size=60), size=(40, 60)).astype(np.float32)
    adata = ad.AnnData(sparse.csr_matrix(counts))
    adata.obs["cell_type"] = np.array(["a", "b", "c", "d"])[np.arange(40) % 4]
    adata.obs["batch"] = np.arange(40) % 2
    got, error = _outcome(CALLS[name], adata)
    assert error is None, error
    assert np.isfinite(got).any()
