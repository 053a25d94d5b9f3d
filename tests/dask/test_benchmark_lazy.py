"""``cellrep benchmark --lazy``: the data stay on disk, cellrep's methods read dask chunks, peers get memory copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.benchmark.conftest import labelled_counts
from tests.benchmark.test_cli import assert_one_line_error, run_cli

from cellrep.benchmark import METHODS
from cellrep.benchmark._cli import main
from cellrep.benchmark._lazy import ROW_COLUMN, lazy_method, read_lazy_input
from cellrep.benchmark._tasks import make_splits

pytest.importorskip("dask")


def _noisy_labelled(n_cells: int = 240):
    """Three types with weak markers: not every cell is classified right."""
    adata = labelled_counts(n_cells, 60, seed=3)
    rng = np.random.default_rng(3)
    rates = rng.gamma(1.0, 1.0, size=adata.n_vars)[None, :] * np.ones((n_cells, 1))
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    for cell_type in range(3):
        rates[codes == cell_type, cell_type * 5 : cell_type * 5 + 5] += 0.8
    adata.X = sparse.csr_matrix(rng.poisson(rates).astype(np.float32))
    return adata


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.zarr"
    _noisy_labelled().write_zarr(path)
    return path


@pytest.mark.parametrize(
    "name", ["cellrep_default", "souza_mehta", "cellrep_pearson_knn", "cellrep_sctop", "scanpy"]
)
def test_lazy_method_equals_in_memory(data_file, name):
    """Each method on the lazily read split predicts what it predicts on the same split in memory."""
    lazy = read_lazy_input(data_file, "--data", chunk_size=50)
    memory = lazy.copy()
    memory.X = memory.X.compute()
    method = METHODS[name]
    split_lazy = make_splits(lazy, "cell_type", tasks=["within"], seeds=[0])[0]
    split_memory = make_splits(memory, "cell_type", tasks=["within"], seeds=[0])[0]
    assert not np.all(np.diff(split_lazy.test.obs[ROW_COLUMN].to_numpy()) > 0)  # a shuffled split
    wrapped = lazy_method(method, lazy)
    labels, confidence = wrapped.predict(wrapped.fit(split_lazy.train, "cell_type", 0), split_lazy.test)
    expected_labels, expected_confidence = method.predict(
        method.fit(split_memory.train, "cell_type", 0), split_memory.test
    )
    assert 0.4 < np.mean(expected_labels == split_memory.truth) < 1.0  # a task with errors to reproduce
    # the lazy fit sees the training cells in file order: the same model up to solver tolerance
    assert np.mean(np.asarray(labels) == np.asarray(expected_labels)) >= 0.98
    np.testing.assert_allclose(confidence, expected_confidence, atol=0.02)


def test_benchmark_lazy_from_the_command_line(data_file, tmp_path, capsys):
    out = tmp_path / "report"
    argv = [
        "benchmark",
        "--data",
        str(data_file),
        "--methods",
        "cellrep_default",
        "scanpy",
        "--tasks",
        "within",
    ]
    argv += ["--seeds", "0", "--out", str(out), "--no-progress", "--lazy", "--chunk-size", "64"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "all 2 fits succeeded" in captured.out
    warning = [line for line in captured.err.splitlines() if "--lazy" in line]
    assert len(warning) == 1
    assert "scanpy cannot read dask arrays" in warning[0]
    assert "GiB" in warning[0]
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"cellrep_default", "scanpy"}
    assert results["macro_f1"].notna().all()


def _bad_lazy_inputs(data_file, tmp_path):
    data = str(data_file)
    return {
        "chunk size without --lazy": (
            ["--data", data, "--chunk-size", "10"],
            "--chunk-size only apply with --lazy",
        ),
        "scheduler without --lazy": (
            ["--data", data, "--scheduler", "threads"],
            "--scheduler only apply with --lazy",
        ),
        "zero chunk size": (
            ["--data", data, "--lazy", "--chunk-size", "0"],
            "--chunk-size must be a positive",
        ),
        "unknown scheduler": (["--data", data, "--lazy", "--scheduler", "gpu"], "a scheduler address"),
        "lazy without data": (["--lazy"], "--lazy reads --data from disk; pass --data"),
        "missing store": (["--data", str(tmp_path / "nope.zarr"), "--lazy"], "nope.zarr: no such file"),
        "not AnnData": (["--data", str(tmp_path / "notes.txt"), "--lazy"], "is not a readable AnnData"),
        "log data, first chunk": (
            ["--data", str(tmp_path / "logged.zarr"), "--lazy"],
            "raw integer counts are needed",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "chunk size without --lazy",
        "scheduler without --lazy",
        "zero chunk size",
        "unknown scheduler",
        "lazy without data",
        "missing store",
        "not AnnData",
        "log data, first chunk",
    ],
)
def test_bad_lazy_input_gives_one_line_and_exit_2(data_file, tmp_path, capsys, case):
    (tmp_path / "notes.txt").write_text("not AnnData")
    logged = _noisy_labelled()
    logged.X = logged.X.log1p()
    logged.write_zarr(tmp_path / "logged.zarr")
    argv, fragment = _bad_lazy_inputs(data_file, tmp_path)[case]
    out = tmp_path / "out"
    code, _out, err = run_cli(["benchmark", *argv, "--out", str(out), "--no-progress"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not out.exists()
