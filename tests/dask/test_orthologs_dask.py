"""``cr.tl.map_orthologs`` on dask-backed data: lazy, and exactly the in-memory result.

The genes of every chunk of cells are summed by the in-memory function (one ``map_blocks``
per array), so values, dtype and the class of the chunks equal those of the in-memory call.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts
from tests.dask.test_dask_parity import CHUNK_KINDS, in_memory, to_dask

import cellrep as cr

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

N_CELLS, N_GENES = 230, 40


def _with_orthologs(adata):
    """gene1 and gene2 map to 'Dup', gene5..gene7 to 'Tri', gene3 has none (''), gene4 none (NaN)."""
    targets = np.array([f"Gene{j}" for j in range(adata.n_vars)], dtype=object)
    targets[[1, 2]] = "Dup"
    targets[[5, 6, 7]] = "Tri"
    targets[3], targets[4] = "", np.nan
    adata.var["mouse_ortholog"] = targets
    return adata


def _pair(kind: str, dtype):
    counts = in_memory(synthetic_counts(N_CELLS, N_GENES, seed=2).astype(dtype), kind)
    shifted = in_memory(synthetic_counts(N_CELLS, N_GENES, seed=3).astype(dtype), kind)
    expected = _with_orthologs(make_adata(counts))
    expected.layers["other"] = shifted
    lazy = _with_orthologs(make_adata(to_dask(counts)))
    lazy.layers["other"] = to_dask(shifted)
    return expected, lazy


def _never_compute(*args, **kwargs):
    raise AssertionError("map_orthologs computed a dask array; it must stay lazy")


def _map(adata, duplicates: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the duplicated targets, tested in tests/tl
        return cr.tl.map_orthologs(adata, "mouse_ortholog", duplicates=duplicates)


def assert_identical(expected, actual) -> None:
    """Same class, dtype and values; sparse results also the same stored entries."""
    assert type(actual) is type(expected)
    assert actual.dtype == expected.dtype
    if sparse.issparse(expected):
        assert actual.format == expected.format
        np.testing.assert_array_equal(actual.indptr, expected.indptr)
        np.testing.assert_array_equal(actual.indices, expected.indices)
        np.testing.assert_array_equal(actual.data, expected.data)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("duplicates", ["sum", "first", "drop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("kind", CHUNK_KINDS)
def test_map_orthologs_on_dask_equals_in_memory(kind, dtype, duplicates):
    expected_input, lazy_input = _pair(kind, dtype)
    expected = _map(expected_input, duplicates)
    with dask.config.set(scheduler=_never_compute):
        lazy = _map(lazy_input, duplicates)
    assert lazy.var.equals(expected.var)
    assert lazy.obs.equals(expected.obs)
    for name, expected_matrix, lazy_matrix in (
        ("X", expected.X, lazy.X),
        ("other", expected.layers["other"], lazy.layers["other"]),
    ):
        assert isinstance(lazy_matrix, da.Array), name
        assert lazy_matrix.chunks == ((70, 70, 70, 20), (expected.n_vars,)), name
        assert type(lazy_matrix._meta) is type(expected_matrix), name  # the declared chunk class
        assert lazy_matrix.dtype == expected_matrix.dtype, name
        assert_identical(expected_matrix[:70], lazy_matrix.blocks[0].compute())
        assert_identical(expected_matrix, lazy_matrix.compute())


def test_map_orthologs_leaves_the_lazy_input_as_it_was():
    _expected, lazy = _pair("csr_matrix", np.float32)
    before = lazy.X
    mapped = _map(lazy, "sum")
    assert lazy.X is before
    assert lazy.n_vars == N_GENES
    assert mapped.n_vars == N_GENES - 5  # gene3, gene4 unmapped; Dup merges 2, Tri merges 3


@pytest.mark.parametrize(
    ("rechunk", "message"),
    [
        (lambda x: x.rechunk((70, 10)), "chunked along genes"),
        (lambda x: x.map_blocks(sparse.csc_matrix), "CSC chunks"),
    ],
    ids=["gene_chunks", "csc_chunks"],
)
@pytest.mark.parametrize("where", ["X", "layer"])
def test_badly_chunked_dask_input_is_a_clear_error(rechunk, message, where):
    _expected, lazy = _pair("csr_matrix", np.float64)
    if where == "X":
        lazy.X = rechunk(lazy.X)
    else:
        lazy.layers["other"] = rechunk(lazy.layers["other"])
    with pytest.raises(TypeError, match=message):
        _map(lazy, "sum")
