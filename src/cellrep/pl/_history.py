"""Training curves of the cell encoder, one panel per objective."""

from __future__ import annotations

import os
import re

import pandas as pd
from matplotlib.ticker import MaxNLocator

from ._utils import document_show_save, finish, new_axes_row

# 'mlm_loss_train' style, and scvi-tools' 'train_loss' / 'validation_loss' (optionally '_epoch') for the total
_SPLIT_PATTERNS = (
    re.compile(r"^(?P<objective>.+)_(?P<split>train|validation)$"),
    re.compile(r"^(?P<split>train|validation)_(?P<objective>[a-z]+)(?:_epoch)?$"),
)
_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e"}


@document_show_save
def training_history(
    model,
    *,
    objectives: list[str] | None = None,
    ax=None,
    show: bool = False,
    save: str | os.PathLike | None = None,
):
    """Loss curves per objective (for example MLM, contrastive, supervised), train against validation.

    Every entry of ``model.history`` whose key ends in ``_train`` or ``_validation`` is a curve; the
    rest of the key names the objective (``'mlm_loss_train'`` and ``'mlm_loss_validation'`` share the
    ``mlm_loss`` panel). scvi-tools' total ``'train_loss'``/``'validation_loss'`` (also with
    ``_epoch``) form the ``loss`` panel. Values are DataFrames indexed by epoch, or Series. Curves that
    are zero throughout (an objective that was switched off, such as the supervised loss without
    labels) are left out.

    Parameters
    ----------
    model
        A trained :class:`cellrep.model.CellEncoder` or anything with a ``history`` mapping.
    objectives
        Objectives to show, in order; all found ones by default.
    ax
        One Axes per objective; a new figure when ``None``.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`, one Axes per objective.
    """
    curves = _curves(getattr(model, "history", None) or {})
    if not curves:
        raise ValueError(
            "model.history has no entries ending in '_train' or '_validation'; train the model first."
        )
    found = list(dict.fromkeys(objective for objective, _ in curves))
    if objectives is None:
        objectives = found
    unknown = [objective for objective in objectives if objective not in found]
    if unknown:
        raise ValueError(f"No curves for {unknown}; model.history has {found}.")
    axes = new_axes_row(ax, len(objectives), panel_size=(4.0, 3.2))
    for axis, objective in zip(axes, objectives, strict=True):
        for split in ("train", "validation"):
            if (objective, split) in curves:
                values = curves[(objective, split)]
                axis.plot(
                    values.index, values.to_numpy(), marker="o", ms=3, color=_COLORS[split], label=split
                )
        axis.set_title(objective.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel("loss")
        axis.legend(frameon=False, fontsize=8)
    figure = axes[0].figure
    if ax is None:
        figure.tight_layout()
    finish(figure, show=show, save=save)
    return figure


def _curves(history) -> dict[tuple[str, str], pd.Series]:
    curves = {}
    for key, values in history.items():
        match = next((m for pattern in _SPLIT_PATTERNS if (m := pattern.match(str(key)))), None)
        if match is None:
            continue
        series = values.iloc[:, 0] if isinstance(values, pd.DataFrame) else pd.Series(values)
        values = pd.to_numeric(series, errors="coerce").dropna()
        if (values != 0).any():  # an objective that was switched off logs zeros
            curves[(match["objective"], match["split"])] = values
    return curves
