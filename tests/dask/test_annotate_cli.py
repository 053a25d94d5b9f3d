"""``cellrep annotate``: in memory and with ``--lazy`` (threads and a local process cluster) give the same labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from tests.conftest import make_adata, synthetic_counts

from cellrep.benchmark._cli import main

pytest.importorskip("dask")


@pytest.fixture
def files(tmp_path):
    reference = make_adata(sparse.csr_matrix(synthetic_counts(300, 100, seed=0).astype(np.float32)))
    query = make_adata(sparse.csr_matrix(synthetic_counts(150, 100, seed=1).astype(np.float32)))
    reference.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    return tmp_path


def _annotate(files, name: str, *options: str) -> pd.DataFrame:
    out = files / f"{name}.csv"
    arguments = ["annotate", "--reference", str(files / "ref.h5ad"), "--query", str(files / "query.h5ad")]
    assert main([*arguments, "--out", str(out), *options]) == 0
    return pd.read_csv(out, index_col=0)


def test_lazy_annotation_equals_in_memory(files, capsys):
    in_memory = _annotate(files, "memory")
    lazy = _annotate(files, "lazy", "--lazy", "--chunk-size", "40", "--scheduler", "threads")
    assert "[" in capsys.readouterr().err  # the chunk progress bar
    assert (lazy["cell_type_pred"] == in_memory["cell_type_pred"]).all()
    np.testing.assert_allclose(lazy["cell_type_confidence"], in_memory["cell_type_confidence"], atol=1e-3)


def test_bad_scheduler_is_a_clear_error(files, capsys):
    arguments = ["annotate", "--reference", str(files / "ref.h5ad"), "--query", str(files / "query.h5ad")]
    status = main([*arguments, "--out", str(files / "bad.csv"), "--lazy", "--scheduler", "gpu"])
    error = capsys.readouterr().err
    assert status == 2
    assert "scheduler address" in error
    assert "Traceback" not in error
    assert not (files / "bad.csv").exists()


def test_missing_reference_is_one_line_exit_2(files, capsys):
    status = main(["annotate", "--reference", str(files / "nope.h5ad"), "--query", str(files / "query.h5ad")])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("cellrep annotate: error:")
    assert "Traceback" not in error


@pytest.mark.parametrize("option", ["--reference", "--query"])
@pytest.mark.parametrize("problem", ["missing", "not_anndata"])
def test_unreadable_file_error_names_the_option_and_file(files, capsys, option, problem):
    bad = files / "bad.h5ad"
    if problem == "not_anndata":
        bad.write_text("hello")
    paths = {"--reference": str(files / "ref.h5ad"), "--query": str(files / "query.h5ad"), option: str(bad)}
    status = main(
        ["annotate", *[part for pair in paths.items() for part in pair], "--out", str(files / "l.csv")]
    )
    error = capsys.readouterr().err
    assert status == 2
    expected = "no such file" if problem == "missing" else "is not a readable AnnData"
    assert error.startswith(f"cellrep annotate: error: {option} {bad}")
    assert expected in error
    assert error.count("\n") == 1
    assert "Traceback" not in error
