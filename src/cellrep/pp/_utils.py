"""Shared plumbing of the ``pp`` wrappers: pick ``X`` or a layer, validate, copy, write back.

A wrapper does::

    adata, matrix = select_matrix(adata, layer, copy=copy, check=check_counts)
    result = some_array_function(matrix)
    set_matrix(adata, result, layer)
    return adata if copy else None

``select_matrix`` runs every check on the original object before anything is copied or
modified, so a failing call leaves the AnnData untouched. The matrix it returns is the one
:func:`cellrep._validation.get_matrix` gives: when the stored matrix needs converting
(float16/bool dtype, non-canonical sparse), a converted copy, so the stored matrix is never
modified and ``set_matrix`` stores the result in its place.
"""

from __future__ import annotations

from collections.abc import Callable

from anndata import AnnData

from .._validation import as_kernel_input, get_matrix, stored_matrix


def select_matrix(
    adata: AnnData,
    layer: str | None = None,
    *,
    copy: bool = False,
    modify: bool = True,
    check: Callable[[object], None] | None = None,
) -> tuple[AnnData, object]:
    """Validate and return ``(adata, matrix)`` ready to be transformed.

    Parameters
    ----------
    adata
        The annotated data matrix.
    layer
        Layer to use; ``None`` uses ``adata.X``. An unknown layer raises a ValueError.
    copy
        Return a copy of ``adata`` (and its matrix) instead of the original.
    modify
        The caller will write into ``adata``: a view is turned into an actual AnnData first.
    check
        Validation run on the matrix (for example :func:`cellrep._validation.check_counts`).
    """
    stored = stored_matrix(adata, layer)
    matrix = as_kernel_input(stored)
    if check is not None:
        check(matrix)
    if copy:
        adata = adata.copy()
    elif modify and adata.is_view:
        adata._init_as_actual(adata.copy())
    else:
        return adata, matrix
    # a converted matrix is already a private copy; the stored one must be read from the new object
    return adata, (get_matrix(adata, layer) if matrix is stored else matrix)


def set_matrix(adata: AnnData, matrix, layer: str | None = None) -> None:
    """Store ``matrix`` in ``adata.X`` or ``adata.layers[layer]`` (no-op when already there)."""
    if matrix is stored_matrix(adata, layer):
        return
    if layer is None:
        adata.X = matrix
    else:
        adata.layers[layer] = matrix


def check_copy_inplace(copy: bool, inplace: bool) -> None:
    """Reject ``copy=True`` with ``inplace=False``, as scanpy does."""
    if copy and not inplace:
        raise ValueError("`copy=True` cannot be used with `inplace=False`; pass one or the other.")
