"""Benchmark results: accuracy by task and method, and fit time."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pandas as pd

from ._utils import category_colors, document_show_save, finish, new_axes_row

_REQUIRED = ("task", "method", "split")


@document_show_save
def benchmark(
    results: pd.DataFrame,
    *,
    metric: str = "macro_f1",
    speed: bool = True,
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
):
    """Grouped bars of ``metric`` by task (and dataset) and method, plus a fit-time panel.

    Each bar is the mean over splits, with the standard deviation as error bar (the minimum–maximum
    range for fit time, so it stays positive on the log axis); a (task, method) with a single split is
    a bar without error bar. Rows with a missing value (failed runs) are left out. The speed panel
    shows ``fit_seconds`` the same way on a log scale. cellrep's variants (the settings other than
    its default and the Souza–Mehta recipe, run with ``--methods all``) are drawn last in each
    group, in shades of grey under one legend entry, so the default and the peers keep the colours.

    Parameters
    ----------
    results
        The tidy table of :mod:`cellrep.benchmark`: one row per task × dataset × method × split, with
        columns ``task``, ``method``, ``split``, ``metric`` and ``fit_seconds`` (``dataset`` optional).
    metric
        Column to plot, for example ``'macro_f1'`` or ``'accuracy'``.
    speed
        Add the fit-time panel.
    ax
        One Axes, or two with ``speed``; a new figure when ``None``.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`; the first Axes holds the metric, the second the fit time.
    """
    columns = [*_REQUIRED, metric] + (["fit_seconds"] if speed else [])
    missing = [column for column in columns if column not in results.columns]
    if missing:
        raise ValueError(
            f"results lacks the columns {missing}; pass the DataFrame returned by cellrep.benchmark."
        )
    if results.empty:
        raise ValueError("results is empty.")
    table = results.dropna(subset=[metric])  # failed runs have no score
    if table.empty:
        raise ValueError(f"No run has a {metric!r} value; every method failed.")
    table = table.assign(group=_group_labels(table))
    groups = list(dict.fromkeys(table["group"]))
    methods, colors = _method_colors(list(dict.fromkeys(table["method"])))
    # about 0.1 inch per bar, within limits that keep a wide table on one screen
    panel_width = float(np.clip(0.1 * len(groups) * len(methods) + 2.0, 4.5, 14.0))
    axes = new_axes_row(ax, 2 if speed else 1, panel_size=(panel_width, 4.0))
    _grouped(axes[0], table, metric, groups, methods, colors, spread="std")
    axes[0].set_ylabel(metric.replace("_", " "))
    axes[0].set_title(f"{metric.replace('_', ' ')} by task and method")
    if speed:
        _grouped(axes[1], table, "fit_seconds", groups, methods, colors, spread="range")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("fit time (s, log scale)")
        axes[1].set_title("fit time")
    axes[-1].legend(title="method", fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure = axes[0].figure
    if ax is None:
        figure.tight_layout()
    finish(figure, show=show, save=save)
    return figure


_VARIANTS = "cellrep variants"


def _is_variant(method: str) -> bool:
    from ..benchmark._methods import METHODS

    if method in METHODS:
        return METHODS[method].family == "variant"
    # settings built with cellrep_method by the benchmark scripts: cellrep_<normalization>_... or cellrep_default_...
    return method.startswith(("cellrep_default_", "cellrep_log_", "cellrep_rank_probit_", "cellrep_pearson_"))


def _method_colors(methods: list) -> tuple[list, dict]:
    """Methods in drawing order (variants last) and their colours (variants: greys, listed under ``_VARIANTS``)."""
    main = [method for method in methods if not _is_variant(method)]
    variants = [method for method in methods if _is_variant(method)]
    colors = category_colors(main)
    greys = np.linspace(0.35, 0.8, max(len(variants), 1))
    colors.update({method: str(round(grey, 3)) for method, grey in zip(variants, greys, strict=False)})
    if variants:
        colors[_VARIANTS] = tuple(variants)
    return main + variants, colors


def _group_labels(results: pd.DataFrame) -> pd.Series:
    """Tick labels: the task, wrapped at underscores, and the dataset when there are several."""
    tasks = results["task"].astype(str).map(lambda task: textwrap.fill(task.replace("_", " "), 14))
    if "dataset" in results and results["dataset"].nunique() > 1:
        datasets = (
            results["dataset"]
            .astype(str)
            .map(lambda dataset: textwrap.fill(dataset.replace("_", " ").replace("->", " → "), 12))
        )
        return tasks + "\n" + datasets
    return tasks


def _grouped(
    ax, table: pd.DataFrame, column: str, groups: list, methods: list, colors: dict, *, spread: str
) -> None:
    """Bars (mean with ``spread`` error bars over splits) or points (one split) per group and method.

    ``spread='std'`` draws ± one standard deviation; ``'range'`` draws from the minimum to the
    maximum, which stays positive on a log axis.
    """
    scored = table.dropna(subset=[column])  # failed runs have NaN scores and times
    summary = scored.groupby(["group", "method"], sort=False)[column].agg(
        ["mean", "std", "min", "max", "count"]
    )
    summary["std"] = summary["std"].fillna(0.0)
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        if method not in summary.index.get_level_values("method"):
            continue
        rows = summary.xs(method, level="method").reindex(groups).dropna(subset=["mean"])
        positions = np.array([groups.index(group) for group in rows.index]) - 0.4 + width * (index + 0.5)
        if spread == "std":
            errors = np.vstack([rows["std"], rows["std"]])
        else:
            errors = np.vstack([rows["mean"] - rows["min"], rows["max"] - rows["mean"]])
        single = (rows["count"] == 1).to_numpy()
        errors[:, single] = 0.0  # one split: nothing to spread
        variant = method in colors.get(_VARIANTS, ())
        ax.bar(
            positions,
            rows["mean"],
            width=width,
            yerr=errors,
            color=colors[method],
            label=None if variant and method != colors[_VARIANTS][0] else (_VARIANTS if variant else method),
            capsize=2 if (~single).any() else 0,
            error_kw={"lw": 0.8},
        )
    ax.set_xticks(np.arange(len(groups)), labels=groups, fontsize=8 if len(groups) > 4 else None)
    ax.set_xlabel("task")
