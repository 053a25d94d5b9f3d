import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from tests.benchmark.conftest import labelled_counts

from cellrep.benchmark import _cli
from cellrep.benchmark._cli import build_parser, main, parse_arguments


def test_benchmark_command_writes_csv_markdown_and_png(labelled, tmp_path, capsys):
    data = tmp_path / "tiny.h5ad"
    labelled.write_h5ad(data)
    out = tmp_path / "report"
    code = main(
        [
            "benchmark",
            "--data",
            str(data),
            "--labels",
            "cell_type",
            "--methods",
            "cellrep_log_logreg",
            "scanpy",
            "--tasks",
            "within",
            "leave_one_batch_out",
            "--seeds",
            "0",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "all 6 fits succeeded" in printed
    assert "| within | tiny | cellrep_log_logreg |" in printed
    assert "leave_one_batch_out" in printed
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"cellrep_log_logreg", "scanpy"}
    assert set(results["task"]) == {"within", "leave_one_batch_out"}
    assert len(results) == 2 * (1 + 2)  # one seed + two held-out batches, two methods
    assert (out / "summary.md").read_text().startswith("| task |")
    assert (out / "benchmark.png").stat().st_size > 0


def test_cross_species_from_the_command_line(human_mouse, tmp_path, capsys):
    human, mouse = human_mouse
    human.write_h5ad(tmp_path / "human.h5ad")
    mouse.write_h5ad(tmp_path / "mouse.h5ad")
    code = main(
        [
            "benchmark",
            "--data",
            str(tmp_path / "human.h5ad"),
            "--query",
            str(tmp_path / "mouse.h5ad"),
            "--orthologs",
            "mouse_ortholog",
            "--methods",
            "cellrep_log_logreg",
            "--tasks",
            "cross_species",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0
    assert "| cross_species | human->mouse | cellrep_log_logreg |" in capsys.readouterr().out


def test_parser_defaults_and_errors():
    args = parse_arguments(["benchmark"])
    assert args.data is None
    assert args.seeds == [0, 1, 2]
    assert "scvi" not in args.methods
    assert "scanpy" in args.methods
    with pytest.raises(SystemExit):
        parse_arguments(["benchmark", "--methods", "nope"])
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


# --- issue 11: the command line checks its inputs before the first fit --------------------------------------


def run_cli(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``cellrep`` with ``argv``."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]


@pytest.fixture
def files(labelled, human_mouse, tmp_path):
    human, mouse = human_mouse
    paths = {
        "data": tmp_path / "data.h5ad",
        "human": tmp_path / "human.h5ad",
        "mouse": tmp_path / "mouse.h5ad",
    }
    labelled.write_h5ad(paths["data"])
    human.write_h5ad(paths["human"])
    mouse.write_h5ad(paths["mouse"])
    not_anndata = tmp_path / "notes.h5ad"
    not_anndata.write_text("not an h5ad file")
    paths["not_anndata"] = not_anndata
    logged = labelled.copy()
    logged.layers["counts"] = logged.X.copy()
    logged.X = logged.X.log1p()
    paths["logged"] = tmp_path / "logged.h5ad"
    logged.write_h5ad(paths["logged"])
    one_class = labelled.copy()
    one_class.obs["cell_type"] = np.where(np.arange(one_class.n_obs) == 0, "rare", "common")
    paths["one_class"] = tmp_path / "one_class.h5ad"
    one_class.write_h5ad(paths["one_class"])
    narrow = labelled_counts(60, seed=3)[:, :10].copy()  # 10 of the 40 genes of data.h5ad
    paths["narrow"] = tmp_path / "narrow.h5ad"
    narrow.write_h5ad(paths["narrow"])
    paths["out"] = tmp_path / "out"
    return paths


def bad_inputs(paths):
    data, human, mouse = str(paths["data"]), str(paths["human"]), str(paths["mouse"])
    return {
        "missing file": (["--data", str(paths["data"].with_name("missing.h5ad"))], "no such file"),
        "missing query file": (["--data", data, "--query", "nope.h5ad"], "--query nope.h5ad: no such file"),
        "not AnnData": (["--data", str(paths["not_anndata"])], "is not a readable AnnData .h5ad file"),
        "missing label column": (["--data", data, "--labels", "nope"], "has no obs column 'nope'"),
        "fewer than 2 classes of 2 cells": (
            ["--data", str(paths["one_class"])],
            "1 class(es) with at least 2 cells; the benchmark needs at least 2 (class sizes: common: ",
        ),
        "log data in X": (
            ["--data", str(paths["logged"])],
            "raw integer counts are needed; the benchmark needs raw counts: pass --layer",
        ),
        "missing layer": (["--data", data, "--layer", "raw"], "has no layer 'raw'"),
        "cross_dataset without query": (["--data", data, "--tasks", "cross_dataset"], "needs --query"),
        "cross_species without orthologs": (
            ["--data", human, "--query", mouse, "--tasks", "cross_species"],
            "cross_species needs --orthologs",
        ),
        "orthologs without query": (
            ["--data", human, "--orthologs", "mouse_ortholog"],
            "--orthologs needs --query",
        ),
        "orthologs not a column": (
            ["--data", human, "--query", mouse, "--orthologs", "nope"],
            "not a var column",
        ),
        "query without cross task": (
            ["--data", human, "--query", mouse, "--tasks", "within"],
            "only used by the cross tasks",
        ),
        "10 shared genes": (
            ["--data", data, "--query", str(paths["narrow"])],
            "--data and --query: Only 10 genes are shared by the reference (40 genes) and the query "
            "(10 genes), 100% of the smaller panel; at least 20 are needed",
        ),
        "too small for novel_type": (
            ["--data", data, "--tasks", "novel_type"],
            "--tasks novel_type needs at least 3 types and one with 10 or more cells in the 20% test part; "
            "these data have 3 types with at most 6 test cells (90 cells in all): pass a larger --data",
        ),
        "unknown method": (["--data", data, "--methods", "nope"], "unknown method(s) nope"),
        "unknown task": (["--data", data, "--tasks", "nope"], "unknown task(s) nope"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "missing query file",
        "not AnnData",
        "missing label column",
        "fewer than 2 classes of 2 cells",
        "log data in X",
        "missing layer",
        "cross_dataset without query",
        "cross_species without orthologs",
        "orthologs without query",
        "orthologs not a column",
        "query without cross task",
        "10 shared genes",
        "too small for novel_type",
        "unknown method",
        "unknown task",
    ],
)
def test_bad_input_gives_one_line_and_exit_2(files, capsys, case):
    argv, fragment = bad_inputs(files)[case]
    code, _out, err = run_cli(["benchmark", *argv, "--out", str(files["out"]), "--no-progress"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not files["out"].exists()  # nothing was run or written


def test_debug_shows_the_traceback(files):
    with pytest.raises(_cli.InputError, match="no such file"):
        main(["benchmark", "--data", "missing.h5ad", "--debug", "--out", str(files["out"])])


def test_existing_output_folder_is_not_overwritten(files, capsys):
    files["out"].mkdir()
    (files["out"] / "results.csv").write_text("precious")
    code, _, err = run_cli(["benchmark", "--data", str(files["data"]), "--out", str(files["out"])], capsys)
    assert_one_line_error(code, err, "already holds files; choose another --out or pass --overwrite")
    assert (files["out"] / "results.csv").read_text() == "precious"


def test_layer_and_overwrite_and_failed_method_exit_1(files, capsys, monkeypatch):
    from cellrep.benchmark import _methods

    def broken_fit(train, labels_key, seed):
        raise RuntimeError("kaput")

    monkeypatch.setitem(
        _methods.METHODS, "broken", _methods.Method("broken", broken_fit, lambda m, t: None, default=False)
    )
    files["out"].mkdir()
    (files["out"] / "old.txt").write_text("old")
    argv = [
        "benchmark",
        "--data",
        str(files["logged"]),
        "--layer",
        "counts",
        "--methods",
        "cellrep_log_centroid",
        "broken",
        "--tasks",
        "within",
        "--seeds",
        "0",
        "--out",
        str(files["out"]),
        "--overwrite",
        "--no-progress",
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 1
    assert "error: broken failed: RuntimeError: kaput" in err
    assert err.strip().splitlines()[-1].startswith("1 of 2 fits failed (broken)")
    assert "| within | logged | cellrep_log_centroid |" in out
    results = pd.read_csv(files["out"] / "results.csv")
    assert results.loc[results["method"] == "cellrep_log_centroid", "error"].isna().all()


def test_help_is_lazy_and_explains_the_defaults():
    """--help imports neither the harness nor numba/anndata (no timing assert: see docs/cli.md for the time)."""
    script = (
        "import sys, contextlib, io\n"
        "from cellrep.benchmark._cli import main\n"
        "for argv in (['--help'], ['annotate', '--help'], ['benchmark', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as text:\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        "heavy = [name for name in ('numba', 'anndata', 'scanpy', 'sklearn', 'cellrep.benchmark._methods') if name in sys.modules]\n"
        "print(heavy); print(text.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    heavy_line, help_text = result.stdout.split("\n", 1)
    assert heavy_line == "[]"
    assert "cellrep_default  cr.tl.transfer_labels with its default settings" in help_text
    assert "(default: None)" not in help_text
    for option in (
        "--data",
        "--labels",
        "--layer",
        "--query",
        "--orthologs",
        "--batch-key",
        "--tasks",
        "--seeds",
        "--out",
    ):
        block = help_text.split(f"  {option}", 1)[1].split("\n  --", 1)[0]
        assert block.count("default") == 1, (option, block)


def test_static_help_matches_the_harness():
    from cellrep.benchmark import DEFAULT_METHODS, TASKS
    from cellrep.benchmark._tasks import DEFAULT_TASKS

    assert tuple(_cli.KNOWN_TASKS) == tuple(TASKS)
    assert tuple(_cli.DEFAULT_TASKS) == tuple(DEFAULT_TASKS)
    listed = _cli.EPILOG.split("default method set:\n")[1].split("\n  '--methods all'")[0]
    names = [
        line.split()[0]
        for line in listed.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert sorted(names) == sorted(DEFAULT_METHODS)


def test_list_methods(capsys):
    code, out, _ = run_cli(["benchmark", "--list-methods"], capsys)
    assert code == 0
    assert "* cellrep_default" in out
    assert "  scvi" in out


def test_a_cross_run_on_few_shared_genes_warns_as_transfer_labels_does(labelled, tmp_path, capsys):
    """USERTEST3: 30 shared genes (fewer than 200) warn once, with transfer_labels' message, and the run goes on."""
    labelled.write_h5ad(tmp_path / "data.h5ad")
    labelled_counts(60, seed=3)[:, :30].copy().write_h5ad(tmp_path / "query.h5ad")
    argv = ["benchmark", "--data", str(tmp_path / "data.h5ad"), "--query", str(tmp_path / "query.h5ad")]
    argv += ["--methods", "cellrep_log_logreg", "--tasks", "cross_dataset", "--out", str(tmp_path / "out")]
    with pytest.warns(UserWarning, match="genes are shared") as record:
        code = main([*argv, "--no-progress"])
    assert code == 0
    overlap = [str(warning.message) for warning in record if "genes are shared" in str(warning.message)]
    assert overlap == [
        "Only 30 genes are shared by the reference (40 genes) and the query (30 genes), 100% of the smaller "
        "panel (a transfer is reliable from 200 shared genes and half of the smaller panel); features are "
        "chosen among these, and types told apart by other genes may be confused or called unknown."
    ]
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert results[["n_train", "n_test"]].iloc[0].tolist() == [90, 60]
    assert results["error"].isna().iloc[0]  # an empty error column: the fit succeeded


def test_help_describes_the_default_run():
    """USERTEST3: the description names the default methods and the novel_type task, not 'every variant'."""
    from cellrep.benchmark import DEFAULT_METHODS

    bench = build_parser()._subparsers._group_actions[0].choices["benchmark"]
    description = " ".join(bench.description.split())
    assert "every cellrep linear variant" not in description
    assert "(optionally) scVI" not in description
    assert DEFAULT_METHODS == ("cellrep_default", "souza_mehta", "scanpy", "sctop", "celltypist", "singler")
    for named in ("transfer_labels", "Souza-Mehta", "scanpy", "sctop", "CellTypist", "SingleR", "novel_type"):
        assert named in description, named
