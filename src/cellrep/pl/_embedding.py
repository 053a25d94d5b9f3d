"""A UMAP of any cellrep representation, drawn by scanpy."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._utils import document_show_save, finish


@document_show_save
def embedding(
    adata,
    basis: str = "X_linear",
    *,
    color: str | Sequence[str] | None = None,
    compute_umap: bool | None = None,
    n_neighbors: int = 15,
    random_state: int = 0,
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    **kwargs,
):
    """Plot a representation in ``adata.obsm`` with :func:`scanpy.pl.embedding`, through a UMAP when needed.

    A 2-D ``obsm[basis]`` is drawn directly. Otherwise (or with ``compute_umap=True``) a kNN graph is built
    with :func:`scanpy.pp.neighbors` on ``use_rep=basis`` (stored as ``uns['neighbors_<name>']`` and its
    ``obsp`` matrices) and :func:`scanpy.tl.umap` writes ``obsm['X_umap_<name>']``, where ``<name>`` is
    ``basis`` without its ``X_`` prefix (``X_umap_linear`` for ``X_linear``). A stored UMAP is reused
    unless ``compute_umap=True``.

    Parameters
    ----------
    adata
        AnnData with ``obsm[basis]``, such as ``'X_linear'`` (:func:`cellrep.tl.linear_embedding`),
        ``'X_cellencoder'`` (:func:`cellrep.tl.encode`), ``'X_pca'`` or ``'X_sctop'``.
    basis
        ``obsm`` key of the representation.
    color
        ``obs`` columns or genes to colour by, as in scanpy; categories use ``uns[f'{key}_colors']`` or
        scanpy's palette.
    compute_umap
        ``None``: compute the UMAP only if the representation is not 2-D and none is stored;
        ``True``: always recompute; ``False``: draw ``obsm[basis]``'s first two dimensions.
    n_neighbors
        Neighbours of the kNN graph.
    random_state
        Seed of the UMAP.
    ax
        Axes to draw into (single ``color`` only); a new figure when ``None``.
    {show_save}
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``size``, ``legend_loc``, ``title``, ...).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`, or a list of them for several ``color`` keys.
    """
    import scanpy as sc

    if basis not in adata.obsm:
        raise ValueError(f"adata.obsm has no {basis!r} (available: {list(adata.obsm.keys())}).")
    plotted = _umap_of(adata, basis, compute_umap, n_neighbors, random_state)
    # scanpy finds 'X_<name>' from '<name>' and then labels the axes '<name>1', '<name>2'
    axes = sc.pl.embedding(adata, basis=plotted.removeprefix("X_"), color=color, ax=ax, show=False, **kwargs)
    first = axes[0] if isinstance(axes, list) else axes
    finish(first.figure, show=show, save=save)
    return axes


def _umap_of(adata, basis: str, compute_umap: bool | None, n_neighbors: int, random_state: int) -> str:
    """Key of the 2-D coordinates to draw, computing the UMAP of ``basis`` when needed."""
    import scanpy as sc

    is_2d = adata.obsm[basis].shape[1] == 2
    umap_key = f"X_umap_{basis.removeprefix('X_')}"
    if compute_umap is False or (compute_umap is None and is_2d):
        return basis
    if compute_umap is None and umap_key in adata.obsm:
        return umap_key
    neighbors_key = f"neighbors_{basis.removeprefix('X_')}"
    sc.pp.neighbors(
        adata, n_neighbors=n_neighbors, use_rep=basis, key_added=neighbors_key, random_state=random_state
    )
    sc.tl.umap(adata, neighbors_key=neighbors_key, key_added=umap_key, random_state=random_state)
    return umap_key
