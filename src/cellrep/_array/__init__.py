"""Pure array functions: dispatch on ndarray / CSR / CSC (and dask), call the numba kernels, return arrays."""

from ._offset import OffsetSparseMatrix

__all__ = ["OffsetSparseMatrix"]
