"""Sums of groups of genes: ``matrix @ indicator`` for a genes × groups 0/1 indicator."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._validation import check_matrix_type
from ._dispatch import array_function


@array_function
def aggregate_genes(matrix, indicator: sparse.csc_matrix):
    """``matrix @ indicator``: every column of the result sums the genes its indicator column marks.

    Parameters
    ----------
    matrix
        Cells × genes, dense, CSR or CSC (a dask array of dense or CSR cell chunks is
        aggregated chunk by chunk, lazily: see :mod:`cellrep._array._dask`).
    indicator
        Genes × groups, 1 where a gene belongs to a group.

    Returns
    -------
    Cells × groups in the storage of ``matrix`` (same format and sparse class: ``csr_array``
    stays ``csr_array``) and its dtype: integer counts stay integers.
    """
    check_matrix_type(matrix)
    dtype = matrix.dtype
    if sparse.issparse(matrix):
        product = sparse.csr_matrix(matrix) @ indicator.astype(dtype)
        result = type(matrix)(product.asformat(matrix.format))
        result.sort_indices()
        return result
    return np.asarray(matrix @ indicator.astype(dtype))
