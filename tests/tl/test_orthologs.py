import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.conftest import as_format, read_shared, synthetic_counts

import cellrep as cr


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


@pytest.fixture
def human(counts_adata):
    # gene0..gene39; gene1 and gene2 both map to "Dup", gene3 has none, gene4 is NaN
    targets = [f"Gene{j}" for j in range(counts_adata.n_vars)]
    targets[1] = targets[2] = "Dup"
    targets[3] = ""
    counts_adata.var["mouse_ortholog"] = targets
    counts_adata.var.loc["gene4", "mouse_ortholog"] = np.nan
    counts_adata.layers["counts"] = counts_adata.X.copy()
    return counts_adata


def test_var_column_renames_sums_duplicates_and_drops_unmapped(human, matrix_format, dtype):
    with pytest.warns(UserWarning, match="several source genes"):
        mapped = cr.tl.map_orthologs(human, "mouse_ortholog")
    dense = _dense(human.X)
    sources = set(",".join(mapped.var["source_gene"]).split(","))
    assert {"gene3", "gene4"}.isdisjoint(sources)
    assert "Gene3" not in mapped.var_names
    assert "Gene4" not in mapped.var_names
    assert mapped.n_vars == human.n_vars - 3  # gene3, gene4 unmapped, gene1+gene2 merged
    np.testing.assert_array_equal(_dense(mapped[:, "Dup"].X).ravel(), dense[:, 1] + dense[:, 2])
    np.testing.assert_array_equal(_dense(mapped[:, "Gene10"].X).ravel(), dense[:, 10])
    np.testing.assert_array_equal(_dense(mapped.layers["counts"]), _dense(mapped.X))
    assert mapped.var.loc["Dup", "source_gene"] == "gene1,gene2"
    assert mapped.X.dtype == human.X.dtype
    assert (sparse.issparse(mapped.X) and mapped.X.format) == (sparse.issparse(human.X) and human.X.format)
    pd.testing.assert_frame_equal(mapped.obs, human.obs)


@pytest.mark.parametrize(("rule", "expected_genes"), [("first", ["gene1"]), ("drop", [])])
def test_duplicate_rules(human, rule, expected_genes):
    with pytest.warns(UserWarning, match="several source genes"):
        mapped = cr.tl.map_orthologs(human, "mouse_ortholog", duplicates=rule)
    if expected_genes:
        np.testing.assert_array_equal(_dense(mapped[:, "Dup"].X).ravel(), _dense(human[:, "gene1"].X).ravel())
    else:
        assert "Dup" not in mapped.var_names
    assert mapped.var_names.is_unique


def test_dataframe_mapping_ignores_one_to_many():
    adata = ad.AnnData(as_format(synthetic_counts(20, 5), "csr", np.float32))
    adata.var_names = ["a", "b", "c", "d", "e"]
    pairs = pd.DataFrame({"human": ["a", "b", "b", "c", "zz"], "mouse": ["A", "B1", "B2", "C", "ZZ"]})
    mapped = cr.tl.map_orthologs(adata, pairs)
    assert list(mapped.var_names) == ["A", "C"]
    np.testing.assert_array_equal(mapped.X.toarray(), adata[:, ["a", "c"]].X.toarray())
    assert list(cr.tl.map_orthologs(adata, {"e": "E", "d": "D"}).var_names) == ["D", "E"]


def test_bad_mappings_raise():
    adata = ad.AnnData(synthetic_counts(10, 4).astype(np.float32))
    adata.var["mouse_ortholog"] = ""
    with pytest.raises(ValueError, match="not a column"):
        cr.tl.map_orthologs(adata, "nope")
    with pytest.raises(ValueError, match="No gene"):
        cr.tl.map_orthologs(adata, "mouse_ortholog")
    with pytest.raises(ValueError, match="duplicates"):
        cr.tl.map_orthologs(adata, "mouse_ortholog", duplicates="mean")
    with pytest.raises(TypeError, match="mapping"):
        cr.tl.map_orthologs(adata, 3)


@pytest.mark.shared_data
def test_baron_human_to_mouse_shares_the_documented_genes():
    human, mouse = read_shared("baron_human_subset"), read_shared("baron_mouse")
    mapped = cr.tl.map_orthologs(human, "mouse_ortholog")
    assert mapped.n_vars == 14855
    assert mapped.var_names.isin(mouse.var_names).sum() == 11670
    source = mapped.var.loc["Gcg", "source_gene"]
    assert source == "GCG"
    np.testing.assert_array_equal(mapped[:, "Gcg"].X.toarray(), human[:, source].X.toarray())


@pytest.mark.parametrize("sparse_class", [sparse.csr_array, sparse.csc_array])
def test_sparse_arrays_stay_sparse_arrays(sparse_class):
    counts = synthetic_counts(20, 5)
    adata = ad.AnnData(sparse_class(counts))
    adata.var_names = ["a", "b", "c", "d", "e"]
    with pytest.warns(UserWarning, match="several source genes"):
        mapped = cr.tl.map_orthologs(adata, {"a": "A", "b": "B", "c": "B"}, duplicates="sum")
    assert type(mapped.X) is sparse_class
    expected = np.column_stack([counts[:, 0], counts[:, 1] + counts[:, 2]])
    np.testing.assert_array_equal(mapped.X.toarray(), expected)
