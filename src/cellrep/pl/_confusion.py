"""Confusion matrix of transferred labels against the truth."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ._utils import document_show_save, finish, heatmap, new_axes

_MAX_ANNOTATED = 20


@document_show_save
def confusion(
    adata,
    *,
    true_key: str,
    pred_key: str,
    normalize: bool = True,
    cmap: str = "Blues",
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
):
    """Heatmap of true labels (rows) against predicted labels (columns).

    Rows and columns keep their own label sets, so a prediction vocabulary that differs from the
    truth (another dataset or species, or ``'unknown'`` calls) is shown as it is.

    Parameters
    ----------
    adata
        AnnData with both label columns in ``obs``.
    true_key
        ``obs`` column with the true labels.
    pred_key
        ``obs`` column with the predictions (for example ``'cell_type_pred'`` from
        :func:`cellrep.tl.transfer_labels`).
    normalize
        Show the fraction of each true class (rows sum to 1) instead of cell counts.
    cmap
        Matplotlib colour map.
    {single_ax}
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`; its image array is the (normalized) confusion matrix.
    """
    for key in (true_key, pred_key):
        if key not in adata.obs:
            raise ValueError(f"{key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}).")
    truth = adata.obs[true_key].astype("category")
    predicted = adata.obs[pred_key].astype("category")
    table = pd.crosstab(truth, predicted, dropna=True)
    table = table.reindex(index=truth.cat.categories, columns=predicted.cat.categories, fill_value=0)
    values = table.to_numpy(dtype=float)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    ax = new_axes(ax, figsize=(0.45 * values.shape[1] + 3, 0.4 * values.shape[0] + 2))
    heatmap(
        ax,
        values,
        row_labels=table.index,
        column_labels=table.columns,
        cmap=cmap,
        colorbar_label="fraction of true class" if normalize else "cells",
        vmin=0,
        vmax=1 if normalize else None,
    )
    if max(values.shape) <= _MAX_ANNOTATED:
        threshold = values.max() / 2 if values.size else 0
        for (row, column), value in np.ndenumerate(values):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > threshold else "black"
            ax.text(column, row, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    finish(ax.figure, show=show, save=save)
    return ax
