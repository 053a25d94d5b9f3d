"""Gene z-scaling of AnnData that keeps sparse input sparse (implicit centring)."""

from __future__ import annotations

from anndata import AnnData

from .._array._scale import scale_matrix
from .._validation import check_finite, store_params
from ._utils import select_matrix, set_matrix


def scale(
    adata: AnnData,
    *,
    zero_center: bool = True,
    max_value: float | None = None,
    layer: str | None = None,
    copy: bool = False,
):
    """Scale every gene to unit variance (and zero mean), as :func:`scanpy.pp.scale`.

    Means and unbiased (``ddof=1``) standard deviations are accumulated in float64 in one
    numba pass; genes with zero variance get ``std = 1`` (so their centred values are 0),
    as in scanpy. Float data keeps its dtype; integer data becomes float64, as in scanpy.
    Float16 and bool data are read as float32, and sparse input with duplicate entries or
    unsorted indices as its canonical form (a copy; the stored matrix is not modified).


    **Dense input** gives exactly scanpy's result: ``(X - mean) / std``, clipped to
    ``[-max_value, max_value]`` when ``max_value`` is set.

    **Sparse input** (CSR or CSC, format kept) is never densified:

    - ``zero_center=False``: the stored values are divided by ``std`` (and clipped from
      above at ``max_value``), as scanpy does.
    - ``zero_center=True``: the centring is kept *implicit*. The stored values are divided
      by ``std`` in place, so ``X`` holds ``X_raw / std`` with the same sparsity, and the
      scaled matrix is ``X - (mean / std)[None, :]``. ``var['mean']`` and ``var['std']`` hold
      the raw means and standard deviations and
      ``uns['scale']['params']['implicit_center']`` is ``True``; ``cr.tl.pca`` reads these and
      centres on the fly. Code that needs the centred values as a matrix must subtract
      ``var['mean'] / var['std']`` itself (for example via
      :class:`cellrep._array.OffsetSparseMatrix` or densifying explicitly).
      ``max_value`` cannot be combined with implicit centring and raises a ValueError:
      densify first (``adata.X = adata.X.toarray()``), or use ``zero_center=False``.

    Parameters
    ----------
    adata
        Annotated data matrix.
    zero_center
        Centre every gene at zero (implicitly for sparse input, see above).
    max_value
        Clip the scaled values to this value (and to ``-max_value`` when centring).
    layer
        Layer to scale instead of ``X``.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    The copy if ``copy=True``, else ``None``. Sets ``var['mean']``, ``var['std']`` (scanpy's
    names) and ``uns['scale']['params']`` (``zero_center``, ``max_value``, ``layer``,
    ``implicit_center``).
    """
    if max_value is not None and max_value <= 0:
        raise ValueError(f"max_value must be positive or None, got {max_value}.")
    adata, matrix = select_matrix(adata, layer, copy=copy, check=check_finite)
    result, mean, std, implicit_center = scale_matrix(matrix, zero_center=zero_center, max_value=max_value)
    set_matrix(adata, result, layer)
    adata.var["mean"] = mean
    adata.var["std"] = std
    params = {
        "zero_center": zero_center,
        "max_value": max_value,
        "layer": layer,
        "implicit_center": implicit_center,
    }
    store_params(adata, "scale", params)
    return adata if copy else None
