"""scTOP projection scores: mean score per true label, and the two-type "cell fate coordinates" view."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._utils import category_colors, document_show_save, finish, heatmap, new_axes_row


@document_show_save
def sctop_scores(
    adata,
    *,
    groupby: str,
    key: str = "X_sctop",
    types: Sequence[str] | None = None,
    cmap: str = "RdBu_r",
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
):
    """Mean scTOP projection score of each reference type per true label, and optionally a per-cell scatter.

    Reads the cells × types scores in ``adata.obsm[key]`` and the type names in
    ``adata.uns[key]['cell_types']`` (or the columns, when ``obsm[key]`` is a DataFrame), as written
    by :func:`cellrep.tl.sctop_score`.

    Parameters
    ----------
    adata
        Scored AnnData.
    groupby
        ``obs`` column with the true labels (heatmap rows, scatter colours).
    key
        ``obsm``/``uns`` key of the scores.
    types
        Two reference types: adds a scatter of every cell's score for the first (x) against the
        second (y) type, coloured by ``groupby`` with scanpy's palette.
    cmap
        Colour map of the heatmap, centred at 0.
    ax
        One Axes (heatmap only) or two Axes (with ``types``); a new figure when ``None``.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`; its first Axes holds the groups × types heatmap.
    """
    if key not in adata.obsm:
        raise ValueError(f"adata.obsm has no {key!r}; run cellrep.tl.sctop_score(adata, basis) first.")
    if groupby not in adata.obs:
        raise ValueError(f"{groupby!r} is not a column of adata.obs.")
    cell_types = _type_names(adata, key)
    scores = pd.DataFrame(np.asarray(adata.obsm[key]), columns=cell_types, index=adata.obs_names)
    groups = adata.obs[groupby].astype("category")
    means = (
        scores.groupby(groups.to_numpy(), observed=True)
        .mean()
        .reindex(groups.cat.categories)
        .dropna(how="all")
    )

    axes = new_axes_row(ax, 1 if types is None else 2)
    limit = float(np.nanmax(np.abs(means.to_numpy()))) or 1.0
    heatmap(
        axes[0],
        means.to_numpy(),
        row_labels=means.index,
        column_labels=means.columns,
        cmap=cmap,
        colorbar_label="mean projection score",
        vmin=-limit,
        vmax=limit,
    )
    axes[0].set_xlabel("reference type")
    axes[0].set_ylabel(groupby)
    axes[0].set_title("scTOP scores")
    if types is not None:
        _fate_scatter(axes[1], adata, scores, groups, groupby, types)
    figure = axes[0].figure
    if ax is None:
        figure.tight_layout()
    finish(figure, show=show, save=save)
    return figure


def _type_names(adata, key: str) -> list[str]:
    if isinstance(adata.obsm[key], pd.DataFrame):
        return [str(name) for name in adata.obsm[key].columns]
    n_types = np.shape(adata.obsm[key])[1]
    stored = adata.uns.get(key, {})
    names = stored.get("cell_types") if isinstance(stored, dict) else None
    if names is None:
        raise ValueError(
            f"adata.uns[{key!r}]['cell_types'] is missing; it names the columns of adata.obsm[{key!r}]."
        )
    names = [str(name) for name in names]
    if len(names) != n_types:
        raise ValueError(
            f"adata.uns[{key!r}]['cell_types'] has {len(names)} names for {n_types} score columns."
        )
    return names


def _fate_scatter(
    ax, adata, scores: pd.DataFrame, groups: pd.Series, groupby: str, types: Sequence[str]
) -> None:
    if len(types) != 2 or any(name not in scores.columns for name in types):
        raise ValueError(f"types must name two reference types among {list(scores.columns)}, got {types!r}.")
    x_type, y_type = types
    colors = category_colors(list(groups.cat.categories), adata, groupby)
    for category in groups.cat.categories:
        selected = (groups == category).to_numpy()
        if selected.any():
            ax.scatter(
                scores.loc[selected, x_type],
                scores.loc[selected, y_type],
                s=6,
                color=colors[category],
                label=category,
                rasterized=True,
            )
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_xlabel(f"{x_type} score")
    ax.set_ylabel(f"{y_type} score")
    ax.set_title(f"{x_type} vs {y_type}")
    ax.legend(fontsize=7, markerscale=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
