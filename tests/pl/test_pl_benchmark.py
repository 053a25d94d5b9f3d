import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer

import cellrep as cr


def _results(n_splits_by_task):
    rows = []
    rng = np.random.default_rng(0)
    for (task, n_splits), method in itertools.product(
        n_splits_by_task.items(), ["cellrep_linear", "scanpy", "sctop"]
    ):
        for split in range(n_splits):
            rows.append(
                {
                    "task": task,
                    "dataset": "baron_human",
                    "method": method,
                    "split": split,
                    "macro_f1": rng.uniform(0.5, 1.0),
                    "accuracy": rng.uniform(0.5, 1.0),
                    "fit_seconds": rng.uniform(0.1, 100),
                    "predict_seconds": 0.1,
                    "peak_memory_mb": 10.0,
                }
            )
    return pd.DataFrame(rows)


def _bars(ax):
    return [bar for container in ax.containers if isinstance(container, BarContainer) for bar in container]


def test_benchmark_bars_with_error_bars(tmp_path, assert_png):
    results = _results({"within": 3, "leave_one_batch_out": 3})
    figure = cr.pl.benchmark(results, save=tmp_path / "b.png")
    assert_png(tmp_path / "b.png")
    metric_ax, speed_ax = figure.axes[:2]
    bars = _bars(metric_ax)
    assert len(bars) == 2 * 3
    expected = results.groupby(["task", "method"], sort=False)["macro_f1"].mean()
    heights = sorted(bar.get_height() for bar in bars)
    np.testing.assert_allclose(heights, sorted(expected))
    assert all(
        container.errorbar is not None
        for container in metric_ax.containers
        if isinstance(container, BarContainer)
    )
    assert metric_ax.get_ylabel() == "macro f1"
    assert [t.get_text() for t in metric_ax.get_xticklabels()] == ["within", "leave one\nbatch out"]
    assert speed_ax.get_yscale() == "log"
    assert len(_bars(speed_ax)) == 6
    # fit-time error bars span min..max of the splits (positive on the log axis)
    low_high = sorted(
        tuple(segment[:, 1])
        for container in speed_ax.containers
        if isinstance(container, BarContainer)
        for segment in container.errorbar.lines[2][0].get_segments()
    )
    spans = results.groupby(["task", "method"])["fit_seconds"].agg(["min", "max"])
    np.testing.assert_allclose(low_high, sorted(spans.itertuples(index=False, name=None)))
    assert [t.get_text() for t in speed_ax.get_legend().get_texts()] == ["cellrep_linear", "scanpy", "sctop"]


def test_benchmark_single_split_is_a_bar_like_the_others():
    """Issue 10: a task with one split is drawn in the same style (a bar, no error bar)."""
    results = _results({"cross_species": 1, "within": 3})
    figure = cr.pl.benchmark(results, metric="accuracy", speed=False)
    (ax,) = figure.axes
    assert not [collection for collection in ax.collections if isinstance(collection, PathCollection)]
    bars = _bars(ax)
    assert len(bars) == 6
    expected = results.groupby(["task", "method"])["accuracy"].mean()
    np.testing.assert_allclose(sorted(bar.get_height() for bar in bars), sorted(expected))


def test_benchmark_groups_cellrep_variants_in_greys():
    rows = _results({"within": 2})
    variants = [
        "cellrep_log_logreg",
        "cellrep_log_knn",
        "cellrep_pearson_centroid",
        "cellrep_rank_probit_knn",
    ]
    extra = [rows[rows["method"] == "scanpy"].assign(method=name) for name in variants]
    results = pd.concat([rows, *extra], ignore_index=True)
    figure = cr.pl.benchmark(results, speed=False)
    (ax,) = figure.axes
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["cellrep_linear", "scanpy", "sctop", "cellrep variants"]
    containers = [container for container in ax.containers if isinstance(container, BarContainer)]
    colours = [tuple(container.patches[0].get_facecolor()) for container in containers]
    assert len(set(colours[:3])) == 3
    assert all(r == g == b for r, g, b, _ in colours[3:])  # the variants are greys, drawn last


def test_benchmark_missing_column():
    with pytest.raises(ValueError, match="macro_f1"):
        cr.pl.benchmark(_results({"within": 1}).drop(columns="macro_f1"))


def test_benchmark_ignores_failed_runs():
    results = _results({"within": 3})
    failed = results.iloc[[0]].assign(method="scvi", macro_f1=np.nan, fit_seconds=np.nan)
    figure = cr.pl.benchmark(pd.concat([results, failed], ignore_index=True))
    metric_ax, speed_ax = figure.axes[:2]
    heights = [bar.get_height() for bar in _bars(metric_ax)]
    assert len(heights) == 3
    assert np.isfinite(heights).all()
    assert len(_bars(speed_ax)) == 3
