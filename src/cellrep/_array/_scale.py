"""Gene (column) means and standard deviations, and z-scaling that keeps sparse input sparse."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._kernels._elementwise import center_scale_dense, clip_values
from .._kernels._normalize import multiply_major, multiply_minor
from .._settings import numba_threads
from ._dispatch import array_function
from ._moments import grouped_column_moments, is_csr
from ._normalize import output_buffer, output_dtype, stored_values, with_values

# Variances below this fraction of the mean square are rounding noise of E[x²] - E[x]² in float64.
_RELATIVE_VARIANCE_NOISE = 1e-12


def column_mean_std(matrix, *, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and standard deviation of every column of a dense, CSR or CSC matrix.

    One pass over the stored values (numba, float64 accumulation), no densification.
    Constant columns get a standard deviation of exactly 0.

    Parameters
    ----------
    matrix
        Dense, CSR or CSC matrix of shape ``(n_rows, n_columns)``.
    ddof
        Delta degrees of freedom of the variance (1 = unbiased, as scanpy uses). Ignored
        when there are not more than ``ddof`` rows.

    Returns
    -------
    ``(mean, std)``, two float64 arrays of length ``n_columns``.
    """
    n_rows = matrix.shape[0]
    sums, squares = grouped_column_moments(matrix)
    mean = sums[0] / max(n_rows, 1)
    mean_square = squares / max(n_rows, 1)
    variance = mean_square - mean**2
    variance[variance <= _RELATIVE_VARIANCE_NOISE * mean_square] = 0.0
    if n_rows > ddof:
        variance *= n_rows / (n_rows - ddof)
    return mean, np.sqrt(variance)


@array_function
def scale_matrix(matrix, *, zero_center: bool = True, max_value: float | None = None, copy: bool = False):
    """Scale columns to unit variance (and zero mean), like ``sc.pp.scale``.

    Dense input is centred explicitly. Sparse input is only divided by the standard
    deviation; with ``zero_center=True`` the centring stays implicit: the dense scaled value
    is ``result - mean / std`` (the column means of ``result``).

    Returns
    -------
    ``(result, mean, std, implicit_center)`` where ``std`` has zeros replaced by 1 and
    ``implicit_center`` tells whether ``result`` still has to be centred.
    """
    implicit_center = zero_center and sparse.issparse(matrix)
    if implicit_center and max_value is not None:
        raise ValueError(
            "max_value clipping needs the centred values, but centring sparse data is kept implicit "
            "to avoid densifying it. Use max_value=None, or zero_center=False, or densify explicitly "
            "first (adata.X = adata.X.toarray()) if it fits in memory."
        )
    mean, std = column_mean_std(matrix, ddof=1)
    std[std == 0] = 1.0
    result = scale_columns(matrix, mean, std, zero_center=zero_center, max_value=max_value, copy=copy)
    return result, mean, std, implicit_center


def scale_columns(
    matrix, mean: np.ndarray, std: np.ndarray, *, zero_center: bool, max_value: float | None, copy: bool
):
    """Divide every column by ``std`` (non-zero), subtracting ``mean`` first for dense input when
    ``zero_center``, and clip to ``max_value`` (and ``-max_value`` when centring)."""
    factors = 1.0 / std
    out = output_buffer(matrix, output_dtype(stored_values(matrix).dtype, np.float64), copy=copy)
    upper = np.inf if max_value is None else float(max_value)
    lower = -upper if zero_center else -np.inf
    with numba_threads():
        if not sparse.issparse(matrix):
            shift = mean if zero_center else np.zeros_like(mean)
            center_scale_dense(np.asarray(matrix), shift, factors, lower, upper, out)
        else:
            if is_csr(matrix):
                multiply_minor(matrix.data, matrix.indices, factors, False, 1.0, out)
            else:
                multiply_major(matrix.data, matrix.indptr, factors, out)
            if max_value is not None:
                clip_values(out, lower, upper)
    return with_values(matrix, out, copy=copy)
