"""What every plotting function shares: figure creation, saving/showing, scanpy palettes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

#: Docstring entries shared by every plotting function, inserted where ``{show_save}`` stands.
SHOW_SAVE_DOC = """show
        Call :func:`matplotlib.pyplot.show`.
    save
        File to save the figure to (the format follows the suffix, e.g. ``.png`` or ``.pdf``)."""


#: The ``ax`` entry of the functions that draw into a single Axes, inserted where ``{single_ax}`` stands.
SINGLE_AX_DOC = """ax
        Axes to draw into; a new figure when ``None``."""


def document_show_save(function: Callable) -> Callable:
    """Fill the shared ``ax``/``show``/``save`` parameter entries into ``function``'s docstring."""
    function.__doc__ = function.__doc__.replace("{show_save}", SHOW_SAVE_DOC).replace(
        "{single_ax}", SINGLE_AX_DOC
    )
    return function


def new_axes(ax, *, figsize: tuple[float, float] = (5.0, 4.0)):
    """Return ``ax`` if given, else the Axes of a new figure."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def new_axes_row(ax, n_panels: int, *, panel_size: tuple[float, float] = (4.5, 3.8)):
    """Return ``n_panels`` Axes: those in ``ax`` (a sequence of that length) or a new figure's row."""
    if ax is not None:
        axes = list(ax) if isinstance(ax, Sequence | np.ndarray) else [ax]
        if len(axes) != n_panels:
            raise ValueError(
                f"This plot draws {n_panels} panels; pass `ax=` as a sequence of {n_panels} Axes or None."
            )
        return axes
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(1, n_panels, figsize=(panel_size[0] * n_panels, panel_size[1]), squeeze=False)
    return list(axes[0])


def finish(figure, *, show: bool, save: str | os.PathLike | None) -> None:
    """Save ``figure`` to ``save`` (format from the suffix) and show it when asked."""
    if save is not None:
        figure.savefig(save, bbox_inches="tight", dpi=150)
    if show:
        import matplotlib.pyplot as plt

        plt.show()


def category_colors(categories: Sequence[str], adata=None, key: str | None = None) -> dict[str, str]:
    """Colours per category: ``adata.uns[f'{key}_colors']`` when it matches, else scanpy's default palette."""
    from scanpy.pl import palettes

    stored = None if adata is None or key is None else adata.uns.get(f"{key}_colors")
    if key is not None and adata is not None and key in adata.obs and stored is not None:
        known = list(adata.obs[key].astype("category").cat.categories)
        if len(stored) == len(known):
            by_category = dict(zip(known, stored, strict=True))
            if all(category in by_category for category in categories):
                return {category: by_category[category] for category in categories}
    n = len(categories)
    palette = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
    return {category: palette[i % len(palette)] for i, category in enumerate(categories)}


def heatmap(
    ax, values: np.ndarray, *, row_labels, column_labels, cmap: str, colorbar_label: str, **imshow_kwargs
):
    """``imshow`` with labelled rows and columns and a colour bar; returns the image."""
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", **imshow_kwargs)
    ax.set_xticks(np.arange(len(column_labels)), labels=list(column_labels), rotation=90)
    ax.set_yticks(np.arange(len(row_labels)), labels=list(row_labels))
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return image
