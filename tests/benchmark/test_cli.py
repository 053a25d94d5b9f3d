import pandas as pd
import pytest

from cellrep.benchmark._cli import build_parser, main


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
    args = build_parser().parse_args(["benchmark"])
    assert args.data is None
    assert args.seeds == [0, 1, 2]
    assert "scvi" not in args.methods
    assert "scanpy" in args.methods
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--methods", "nope"])
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
