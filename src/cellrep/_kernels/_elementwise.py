"""Element-wise kernels for gene scaling: dense centre-and-scale, and clipping."""

import numba


@numba.njit(parallel=True, cache=True)
def center_scale_dense(x, shift, factors, lower, upper, out):
    """``out[i, c] = clip((x[i, c] - shift[c]) * factors[c], lower, upper)``."""
    for i in numba.prange(x.shape[0]):
        for c in range(x.shape[1]):
            value = (x[i, c] - shift[c]) * factors[c]
            out[i, c] = min(max(value, lower), upper)


@numba.njit(parallel=True, cache=True)
def clip_values(values, lower, upper):
    """Clip a flat array in place to ``[lower, upper]``."""
    for j in numba.prange(values.size):
        values[j] = min(max(values[j], lower), upper)
