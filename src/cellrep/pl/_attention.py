"""The attention-derived gene–gene matrix of the cell encoder."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ._utils import document_show_save, finish, heatmap, new_axes


@document_show_save
def gene_attention(
    adata,
    genes: Sequence[str] | None = None,
    *,
    key: str = "gene_attention",
    n_top: int = 30,
    cmap: str = "viridis",
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
):
    """Heatmap of ``adata.varp[key]`` (written by :func:`cellrep.tl.gene_attention`) for a set of genes.

    Parameters
    ----------
    adata
        AnnData whose ``varp[key]`` is a genes × genes matrix (dense or sparse).
    genes
        Genes to show, in this order. ``None`` shows the ``n_top`` genes with the largest total
        attention (row plus column sums).
    key
        ``varp`` key.
    n_top
        Genes shown when ``genes`` is ``None``.
    cmap
        Matplotlib colour map.
    {single_ax}
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`; rows attend to columns.
    """
    if key not in adata.varp:
        raise ValueError(f"adata.varp has no {key!r}; run cellrep.tl.gene_attention(adata, model) first.")
    matrix = adata.varp[key]
    matrix = np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)
    if genes is None:
        total = matrix.sum(axis=0) + matrix.sum(axis=1)
        index = np.sort(np.argsort(-total, kind="stable")[: min(n_top, adata.n_vars)])
    else:
        missing = [gene for gene in genes if gene not in adata.var_names]
        if missing:
            raise ValueError(f"Genes not in adata.var_names: {missing[:10]}.")
        index = adata.var_names.get_indexer(list(genes))
    names = adata.var_names[index]
    ax = new_axes(ax, figsize=(0.25 * len(index) + 3, 0.25 * len(index) + 2))
    heatmap(
        ax,
        matrix[np.ix_(index, index)],
        row_labels=names,
        column_labels=names,
        cmap=cmap,
        colorbar_label="attention",
    )
    ax.set_xlabel("attended gene")
    ax.set_ylabel("query gene")
    ax.set_title(key.replace("_", " "))
    finish(ax.figure, show=show, save=save)
    return ax
