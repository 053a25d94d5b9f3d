"""Cross-species label transfer on lazily read files equals the in-memory one.

A 'human' reference with a ``mouse_ortholog`` var column and a 'mouse' query, written in the
test's temp dir; the lazy runs read both with :func:`cellrep.read_lazy`, and the reference's
genes are renamed by ``cr.tl.map_orthologs`` on the dask arrays.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.dask.test_dask_parity import assert_same

import cellrep as cr
from cellrep.benchmark import METHODS
from cellrep.benchmark._cli import main
from cellrep.benchmark._lazy import lazy_method, read_lazy_input
from cellrep.benchmark._tasks import make_splits

pytest.importorskip("dask")

N_GENES = 60
CELL_TYPES = ("alpha", "beta", "delta")
#: as in tests/dask/test_dask_parity.py (relative to the largest value): the default's clipped
#: float32 block and logistic regression agree to the solver's tolerance, rank-probit values to
#: float32 rounding, scTOP scores to 1e-6
CONFIDENCE_RTOL = {"cellrep_default": 1e-3, "souza_mehta": 1e-5, "cellrep_sctop": 1e-6}


def _species(n_cells: int, seed: int, prefix: str) -> ad.AnnData:
    """Three types with weak markers (five genes each): not every cell is classified right."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n_cells) % len(CELL_TYPES)
    rates = rng.gamma(1.0, 1.0, size=N_GENES)[None, :] * np.ones((n_cells, 1))
    for code in range(len(CELL_TYPES)):
        rates[codes == code, code * 5 + 1 : code * 5 + 6] += 0.8
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.asarray(CELL_TYPES)[codes])},
        index=[f"{prefix}_cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"{prefix}{j}" for j in range(N_GENES)])
    return ad.AnnData(sparse.csr_matrix(rng.poisson(rates).astype(np.float32)), obs=obs, var=var)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """human.h5ad (240 cells, genes H0..H59) and mouse.h5ad (150 cells, genes M0..M59)."""
    folder = tmp_path_factory.mktemp("species")
    human = _species(240, seed=3, prefix="H")
    orthologs = [f"M{j}" if j % 7 else "" for j in range(N_GENES)]  # every 7th gene has none
    orthologs[21] = orthologs[22]  # H21 and H22 share a mouse ortholog: summed
    human.var["mouse_ortholog"] = orthologs
    human.write_h5ad(folder / "human.h5ad")
    _species(150, seed=4, prefix="M").write_h5ad(folder / "mouse.h5ad")
    return folder


def _benchmark(files, out, *lazy_options: str) -> pd.DataFrame:
    argv = ["benchmark", "--data", str(files / "human.h5ad"), "--query", str(files / "mouse.h5ad")]
    argv += ["--orthologs", "mouse_ortholog", "--tasks", "cross_species", "--no-progress"]
    argv += ["--methods", "cellrep_default", "scanpy", "--out", str(out), *lazy_options]
    assert main(argv) == 0
    return pd.read_csv(out / "results.csv").set_index("method")


@pytest.fixture(scope="module")
def in_memory_results(files) -> pd.DataFrame:
    return _benchmark(files, files / "memory")


def test_lazy_cross_species_benchmark_equals_in_memory(files, in_memory_results, tmp_path, capsys):
    memory = in_memory_results
    lazy = _benchmark(files, tmp_path / "lazy", "--lazy", "--chunk-size", "64")
    assert "scanpy cannot read dask arrays" in capsys.readouterr().err
    assert (lazy["task"] == "cross_species").all()
    assert (lazy["dataset"] == "human->mouse").all()
    assert lazy["error"].isna().all()
    assert (memory["macro_f1"] < 1.0).any()  # errors to reproduce
    for column in ("n_train", "n_test", "macro_f1", "accuracy"):
        pd.testing.assert_series_equal(lazy[column], memory.loc[lazy.index, column], check_exact=True)


@pytest.mark.parametrize("name", ["cellrep_default", "souza_mehta", "cellrep_sctop"])
def test_lazy_cross_species_predictions_equal_in_memory(files, name):
    """The cross_species split of the benchmark: same cells, same genes, same predictions."""
    options = {"tasks": ["cross_species"], "orthologs": "mouse_ortholog", "query_name": "mouse"}
    human = read_lazy_input(files / "human.h5ad", "--data", chunk_size=64)
    mouse = read_lazy_input(files / "mouse.h5ad", "--query", chunk_size=64, first_row=human.n_obs)
    memory_human, memory_mouse = human.copy(), mouse.copy()
    memory_human.X, memory_mouse.X = memory_human.X.compute(), memory_mouse.X.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # only 51 shared genes
        lazy_split = make_splits(human, "cell_type", query=mouse, **options)[0]
        memory_split = make_splits(memory_human, "cell_type", query=memory_mouse, **options)[0]
    assert isinstance(lazy_split.train.X, type(human.X))  # still lazy after the ortholog mapping
    assert "M22" in lazy_split.train.var_names
    method = METHODS[name]
    wrapped = lazy_method(method, human)
    labels, confidence = wrapped.predict(wrapped.fit(lazy_split.train, "cell_type", 0), lazy_split.test)
    expected_labels, expected_confidence = method.predict(
        method.fit(memory_split.train, "cell_type", 0), memory_split.test
    )
    np.testing.assert_array_equal(lazy_split.truth, memory_split.truth)
    assert 0.4 < np.mean(np.asarray(expected_labels) == memory_split.truth) < 1.0
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(expected_labels))
    assert_same(expected_confidence, confidence, rtol=CONFIDENCE_RTOL[name])


@pytest.mark.parametrize("method", ["logreg", "centroid", "sctop"])
def test_map_orthologs_then_transfer_labels_on_lazy_files(files, method):
    """The path of docs/scale-out.md: read_lazy → map_orthologs → transfer_labels."""
    kwargs = {
        "labels_key": "cell_type",
        "method": method,
        "linear_kwargs": {"n_genes": 30, "max_value": None},
    }
    results = []
    for read in (lambda path: cr.read_lazy(path, chunk_size=64), ad.read_h5ad):
        human, mouse = read(files / "human.h5ad"), read(files / "mouse.h5ad")
        with pytest.warns(UserWarning, match="several source genes"):
            mouse_named = cr.tl.map_orthologs(human, "mouse_ortholog")
        cr.tl.transfer_labels(mouse_named, mouse, **kwargs)
        results.append(mouse)
    lazy, memory = results
    assert not isinstance(lazy.X, np.ndarray | sparse.spmatrix)
    assert (lazy.obs["cell_type_pred"] == memory.obs["cell_type_pred"]).all()
    assert_same(memory.obsm["cell_type_proba"], lazy.obsm["cell_type_proba"])


def _annotate(files, out, *options: str) -> pd.DataFrame:
    argv = ["annotate", "--reference", str(files / "human.h5ad"), "--query", str(files / "mouse.h5ad")]
    assert main([*argv, "--out", str(out), *options]) == 0
    return pd.read_csv(out, index_col=0)


def test_lazy_cross_species_annotation_equals_in_memory(files, tmp_path, capsys):
    """``cellrep annotate --orthologs``: the human reference renamed into mouse genes, the mouse query on disk."""
    options = ("--orthologs", "mouse_ortholog", "--method", "centroid")
    memory = _annotate(files, tmp_path / "memory.csv", *options)
    lazy = _annotate(files, tmp_path / "lazy.csv", *options, "--lazy", "--chunk-size", "40")
    truth = ad.read_h5ad(files / "mouse.h5ad").obs["cell_type"].astype(str)
    assert 0.4 < np.mean(memory["cell_type_pred"] == truth) < 1.0
    assert (lazy.index == memory.index).all()
    assert (lazy["cell_type_pred"] == memory["cell_type_pred"]).all()
    assert_same(memory["cell_type_confidence"], lazy["cell_type_confidence"])


def test_annotate_without_shared_genes_or_with_a_wrong_column_is_exit_2(files, tmp_path, capsys):
    argv = ["annotate", "--reference", str(files / "human.h5ad"), "--query", str(files / "mouse.h5ad")]
    argv += ["--out", str(tmp_path / "labels.csv"), "--lazy"]
    assert main(argv) == 2
    assert "share no gene names; for two species pass --orthologs" in capsys.readouterr().err
    assert main([*argv, "--orthologs", "rat_ortholog"]) == 2
    error = capsys.readouterr().err
    assert "--orthologs 'rat_ortholog' is not a var column of --reference" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "labels.csv").exists()
