"""``cr.pp.rank_probit``: the scTOP transform, stored sparse as deltas plus one constant per cell."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._array._offset import OffsetSparseMatrix, offset_matrix
from .._array._rank_probit import rank_probit_matrix
from .._validation import check_counts, get_matrix, store_params


def rank_probit(
    adata: AnnData,
    *,
    l2_normalize: bool = True,
    layer: str | None = None,
    key_added: str = "rank_probit",
    inplace: bool = True,
    dense: bool = False,
    dtype: type = np.float32,
    n_threads: int | None = None,
) -> OffsetSparseMatrix | np.ndarray | None:
    """Rank each gene within its cell, map ranks to normal quantiles and L2-normalise (scTOP).

    For every cell the genes are ranked (ties averaged, ranks ``1 … G``), ``p = rank / (G + 1)``
    is mapped to ``z = Φ⁻¹(p)`` and, by default, the cell is scaled to unit L2 norm. This is
    ``sctop.process``: its library-fraction and ``log2(1 + x)`` steps do not change ranks.
    All zeros of a cell share one rank, so only the stored values are ranked (by counting for
    integer counts, O(nnz) per cell; by sorting otherwise, O(nnz log nnz)) and the result
    stays sparse: ``value = delta + offset`` with ``delta`` non-zero only where the input is.
    Float16 and bool data are read as float32, and sparse input with duplicate entries or
    unsorted indices as its canonical form (a copy; the stored matrix is not modified).


    Parameters
    ----------
    adata
        Cells × genes, non-negative values (counts or normalized data).
    l2_normalize
        Scale each cell to unit L2 norm, as scTOP does. All-zero cells become zeros, with a warning.
    layer
        Layer to read instead of ``adata.X``.
    key_added
        Where to store the result: ``adata.layers[key_added]`` (the deltas, CSR),
        ``adata.obs[f'{key_added}_offset']`` (the per-cell constant) and ``adata.uns[key_added]['params']``.
        Read it back with :func:`get_rank_probit`.
    inplace
        Write to ``adata``; otherwise return the result.
    dense
        Build the dense cells × genes values (layer or return value) instead of the sparse form.
        Only for small data.
    dtype
        Float dtype of the result.
    n_threads
        Thread limit for the numba kernel (default ``cellrep.settings.n_threads``).

    Returns
    -------
    ``None`` when ``inplace``; otherwise an :class:`~cellrep._array.OffsetSparseMatrix`
    (``np.asarray(result)`` gives the dense values), or an ndarray when ``dense``.
    """
    matrix = get_matrix(adata, layer)
    what = "the data" if layer is None else f"layer {layer!r}"
    check_counts(matrix, what, require_integer=False, adata=adata if layer is None else None)
    result = rank_probit_matrix(matrix, l2_normalize=l2_normalize, dtype=dtype, n_threads=n_threads)
    if not inplace:
        return result.toarray() if dense else result
    offset_key = f"{key_added}_offset"
    if dense:
        adata.layers[key_added] = result.toarray()
        if offset_key in adata.obs:
            del adata.obs[offset_key]
    else:
        adata.layers[key_added] = result.deltas
        adata.obs[offset_key] = result.row_offsets
    params = {
        "l2_normalize": l2_normalize,
        "layer": layer,
        "dense": dense,
        "offset_key": None if dense else offset_key,
    }
    store_params(adata, key_added, params)
    return None


def get_rank_probit(adata: AnnData, key: str = "rank_probit") -> OffsetSparseMatrix:
    """The values stored by :func:`rank_probit` (or any ``layer`` + ``obs['<layer>_offset']`` pair).

    Parameters
    ----------
    adata
        AnnData on which :func:`rank_probit` ran.
    key
        Its ``key_added``.

    Returns
    -------
    ``OffsetSparseMatrix(adata.layers[key], adata.obs[f'{key}_offset'])``. A dense layer (from
    ``dense=True``) is wrapped with zero offsets.
    """
    layer = get_matrix(adata, key)
    offset_key = f"{key}_offset"
    if offset_key in adata.obs:
        return offset_matrix(layer, adata.obs[offset_key].to_numpy())
    if sparse.issparse(layer):
        raise ValueError(
            f"adata.obs[{offset_key!r}] is missing, so layer {key!r} is not a complete rank_probit result. "
            "Run `cr.pp.rank_probit(adata)` again."
        )
    dense_values = np.asarray(layer)
    return OffsetSparseMatrix(
        sparse.csr_matrix(dense_values), np.zeros(dense_values.shape[0], dtype=dense_values.dtype)
    )
