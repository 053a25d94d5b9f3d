"""Bad inputs raise a clear error and leave the AnnData untouched, for every pp function of this module."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from tests.conftest import as_format, make_adata, synthetic_counts
from tests.pp.pp_reference import assert_unchanged, snapshot

import cellrep as cr

COUNT_FUNCTIONS = {
    "normalize_total": cr.pp.normalize_total,
    "log_normalize": cr.pp.log_normalize,
    "pearson_residuals": cr.pp.pearson_residuals,
    "rank_probit": cr.pp.rank_probit,
    "hvg_seurat_v3": lambda adata, **kw: cr.pp.select_genes(adata, method="hvg", **kw),
}
ALL_FUNCTIONS = {
    **COUNT_FUNCTIONS,
    "log1p": cr.pp.log1p,
    "scale": cr.pp.scale,
    "anova": lambda adata, **kw: cr.pp.select_genes(adata, labels_key="cell_type", **kw),
}


def corrupted(matrix_format: str, value: float):
    dense = synthetic_counts().astype(np.float64)
    dense[5, 7] = value
    return make_adata(as_format(dense, matrix_format))


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_raise(matrix_format, name, value):
    adata = corrupted(matrix_format, value)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ALL_FUNCTIONS[name](adata)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", COUNT_FUNCTIONS)
def test_negative_counts_raise(matrix_format, name):
    adata = corrupted(matrix_format, -1.0)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="negative"):
        COUNT_FUNCTIONS[name](adata)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
def test_unknown_layer_raises(name):
    adata = make_adata(synthetic_counts())
    adata.layers["counts"] = adata.X.copy()
    before = snapshot(adata)
    with pytest.raises(ValueError, match="Layer 'missing' not found"):
        ALL_FUNCTIONS[name](adata, layer="missing")
    assert_unchanged(adata, before)


@pytest.mark.parametrize("name", ["normalize_total", "log_normalize"])
def test_zero_count_cells_warn(matrix_format, name):
    dense = synthetic_counts()
    dense[0] = 0
    adata = make_adata(as_format(dense, matrix_format, np.float32))
    with pytest.warns(UserWarning, match="zero counts"):
        COUNT_FUNCTIONS[name](adata)
    assert not (adata.X[0].toarray() if sparse.issparse(adata.X) else adata.X[0]).any()


@pytest.mark.parametrize("function", [cr.pp.log1p, cr.pp.log_normalize])
def test_bad_log_base_raises(function):
    adata = make_adata(synthetic_counts())
    before = snapshot(adata)
    with pytest.raises(ValueError, match="base"):
        function(adata, base=1)
    assert_unchanged(adata, before)


def test_non_positive_target_sum_raises():
    adata = make_adata(synthetic_counts().astype(np.float32))
    before = snapshot(adata)
    with pytest.raises(ValueError, match="target_sum"):
        cr.pp.normalize_total(adata, target_sum=0)
    assert_unchanged(adata, before)


# --- issue 11: degenerate batches in highly variable gene selection ------------------------------------------

HVG_SCRIPT = """
import numpy as np, anndata as ad, cellrep as cr
counts = np.zeros((40, 30), dtype=np.float32)
counts[:, :{n_varying}] = np.random.default_rng(0).poisson(3.0, size=(40, {n_varying}))
adata = ad.AnnData(counts)
try:
    cr.pp.select_genes(adata, method="hvg", n_top=5)
except ValueError as error:
    print("ValueError:", error)
"""


def batched_counts(batch_sizes, n_genes: int = 60, seed: int = 0):
    counts = np.random.default_rng(seed).poisson(2.0, size=(sum(batch_sizes), n_genes)).astype(np.float32)
    adata = make_adata(counts)
    adata.obs["batch"] = np.repeat([f"b{i}" for i in range(len(batch_sizes))], batch_sizes)
    return adata


@pytest.mark.parametrize("flavor", ["seurat_v3", "seurat_v3_paper", "seurat", "cell_ranger"])
def test_one_cell_batch_is_named_before_any_fit(flavor):
    adata = batched_counts([30, 1, 25])
    if flavor in ("seurat", "cell_ranger"):
        cr.pp.log_normalize(adata)
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"batch 'b1' of obs\['batch'\] \(1 cells\).*Drop that batch"):
        cr.pp.select_genes(adata, method="hvg", flavor=flavor, batch_key="batch", n_top=10)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("n_varying", [2, 3])
def test_seurat_v3_with_three_or_fewer_varying_genes_does_not_crash(n_varying):
    """This segfaulted inside scikit-misc's loess; run in a subprocess so a regression cannot kill pytest."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", HVG_SCRIPT.format(n_varying=n_varying)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"in the data only {n_varying} distinct gene means vary" in result.stdout


@pytest.mark.parametrize("n_varying", [4, 8, 12])
def test_seurat_v3_with_few_varying_genes_says_what_to_do(n_varying):
    """4-8 varying genes gave "svddc failed in l2fit"; the check names the batch and the way out."""
    counts = np.zeros((40, 30), dtype=np.float32)
    counts[:, :n_varying] = np.random.default_rng(0).poisson(3.0, size=(40, n_varying))
    adata = make_adata(counts)
    adata.obs["batch"] = "only"
    with pytest.raises(
        ValueError, match=r"in batch 'only' of obs\['batch'\] only \d+ distinct gene means vary"
    ) as error:
        cr.pp.select_genes(adata, method="hvg", batch_key="batch")
    assert "svddc" not in str(error.value)
    assert "flavor='seurat'" in str(error.value)


def test_cell_ranger_with_small_batches_gives_a_result():
    """pandas raised "Bin edges must be unique" for a batch of <= 5 cells; equal edges are now merged."""
    adata = batched_counts([40, 4, 3])
    cr.pp.log_normalize(adata)
    result = cr.pp.select_genes(
        adata, method="hvg", flavor="cell_ranger", batch_key="batch", n_top=10, inplace=False
    )
    assert result["highly_variable"].sum() == 10
    assert np.isfinite(result["means"]).all()
    # without batches the bins (and so the values) are those scanpy computes on the same data
    import scanpy as sc

    single = adata[adata.obs["batch"] == "b0"].copy()
    ours = cr.pp.select_genes(single, method="hvg", flavor="cell_ranger", n_top=10, inplace=False)
    theirs = sc.pp.highly_variable_genes(single, flavor="cell_ranger", n_top_genes=10, inplace=False)
    np.testing.assert_allclose(
        ours["dispersions_norm"], theirs["dispersions_norm"], rtol=1e-4, atol=1e-3
    )  # float32 data
