"""Dispatch of the array functions on the array type, in one place.

Every array function that takes a matrix is a :func:`functools.singledispatch` generic over
the matrix type (as in scanpy and fast-array-utils). The in-memory implementation (ndarray,
CSR, CSC and cellrep's implicit matrices) is the undecorated function; dask implementations
are registered by :mod:`cellrep._array._dask` and :mod:`cellrep._array._dask_pca`, which are
imported the first time a dask array arrives, so that ``import cellrep`` does not import dask.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch, update_wrapper

from .._validation import is_dask_array

_dask_modules = ["cellrep._array._dask", "cellrep._array._dask_pca"]


def dask_implementations_in(module_name: str) -> None:
    """Declare that ``module_name`` registers dask implementations (imported with the others on first use).

    Lets a layer above (``cellrep.tl``) add dask implementations of its own generics without
    ``_array`` importing it.
    """
    if module_name not in _dask_modules:
        _dask_modules.append(module_name)


def load_dask_implementations() -> None:
    """Import the modules that register the dask implementations (once; later calls are free)."""
    import importlib

    for name in _dask_modules:
        importlib.import_module(name)


def array_function(func: Callable) -> Callable:
    """Make ``func`` a singledispatch generic over the type of its first argument.

    ``func`` stays the implementation for in-memory matrices; others are added with
    ``@func.register``. A dask array (or an object holding one, such as a lazily loaded
    count matrix inside an implicit matrix) loads the dask implementations first.
    """
    generic = singledispatch(func)

    def dispatched(matrix, *args, **kwargs):
        if is_dask_array(matrix) or is_dask_array(getattr(matrix, "array", None)):
            load_dask_implementations()
        return generic.dispatch(type(matrix))(matrix, *args, **kwargs)

    update_wrapper(dispatched, func)
    dispatched.register = generic.register
    dispatched.registry = generic.registry
    dispatched.in_memory = func
    return dispatched


def is_sparse_matrix(matrix) -> bool:
    """A scipy sparse matrix, or a dask array of them."""
    from scipy import sparse

    return sparse.issparse(matrix) or (
        is_dask_array(matrix) and sparse.issparse(getattr(matrix, "_meta", None))
    )
