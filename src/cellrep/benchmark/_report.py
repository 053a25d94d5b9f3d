"""Summaries of a benchmark table: mean ± std per task × dataset × method, and the files the CLI writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

GROUP_COLUMNS = ["task", "dataset", "method"]
SUMMARY_METRICS = ("macro_f1", "accuracy", "fit_seconds", "predict_seconds", "peak_memory_mb")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over splits, one row per task × dataset × method (best macro-F1 first)."""
    grouped = results.groupby(GROUP_COLUMNS, sort=False)
    summary = grouped[list(SUMMARY_METRICS)].agg(["mean", "std"])
    summary.columns = [f"{metric}_{statistic}" for metric, statistic in summary.columns]
    summary["n_splits"] = grouped["macro_f1"].count()
    summary = summary.reset_index()
    return summary.sort_values(
        ["task", "dataset", "macro_f1_mean"], ascending=[True, True, False], ignore_index=True
    )


def _mean_std(mean: float, std: float, digits: int) -> str:
    if pd.isna(mean):
        return "failed"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table(results: pd.DataFrame) -> str:
    """A markdown table of macro-F1 and accuracy (mean ± std over splits), fit time and peak memory."""
    summary = summarize(results)
    table = pd.DataFrame(
        {
            "task": summary["task"],
            "dataset": summary["dataset"],
            "method": summary["method"],
            "macro F1": [
                _mean_std(m, s, 3)
                for m, s in zip(summary["macro_f1_mean"], summary["macro_f1_std"], strict=True)
            ],
            "accuracy": [
                _mean_std(m, s, 3)
                for m, s in zip(summary["accuracy_mean"], summary["accuracy_std"], strict=True)
            ],
            "fit s": summary["fit_seconds_mean"].map(lambda value: f"{value:.2f}"),
            "predict s": summary["predict_seconds_mean"].map(lambda value: f"{value:.2f}"),
            "peak MB": summary["peak_memory_mb_mean"].map(lambda value: f"{value:.0f}"),
            "splits": summary["n_splits"],
        }
    )
    return _markdown(table)


def _markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (no ``tabulate`` dependency)."""
    rows = [list(map(str, table.columns)), ["---"] * table.shape[1], *table.astype(str).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def write_outputs(results: pd.DataFrame, out_dir: str | Path, *, metric: str = "macro_f1") -> dict[str, Path]:
    """Write ``results.csv``, ``summary.md`` and ``benchmark.png`` (drawn by :func:`cellrep.pl.benchmark`)."""
    from .. import pl

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "results.csv",
        "markdown": out_dir / "summary.md",
        "png": out_dir / "benchmark.png",
    }
    results.to_csv(paths["csv"], index=False)
    paths["markdown"].write_text(results_table(results) + "\n")
    scored = results.dropna(subset=[metric])
    if not scored.empty:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        figure = pl.benchmark(scored, metric=metric, save=paths["png"])
        plt.close(figure)
    return paths
