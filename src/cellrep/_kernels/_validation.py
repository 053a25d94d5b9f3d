"""One parallel read of the stored values for input validation.

A scan returns ``(n_non_finite, n_negative, n_non_integer)`` in a single pass and allocates
nothing of the data's size (``np.isfinite`` would build a boolean temporary as large as the
data). Infinite values are not counted as non-integer; NaN counts as non-integer.

The loops use only comparisons, ``floor`` and integer sums, so LLVM vectorises them (a
running float minimum does not vectorise and made the scan twice as slow). No fastmath: it
would assume that NaN and infinity never occur.
"""

import numba
import numpy as np

# values per parallel task of the flat scan
SCAN_CHUNK = 1 << 16


@numba.njit(inline="always")
def _scan(values):
    n_non_finite = 0
    n_negative = 0
    n_non_integer = 0
    for j in range(values.size):
        value = values[j]
        n_non_finite += not abs(value) < np.inf  # the comparison is False only for NaN and ±inf
        n_negative += value < 0
        n_non_integer += value != np.floor(value)
    return n_non_finite, n_negative, n_non_integer


@numba.njit(parallel=True, cache=True)
def scan_flat(values):
    """Scan a 1-D array in parallel chunks of ``SCAN_CHUNK`` values."""
    n_chunks = (values.size + SCAN_CHUNK - 1) // SCAN_CHUNK
    non_finite = np.zeros(n_chunks, dtype=np.int64)
    negative = np.zeros(n_chunks, dtype=np.int64)
    non_integer = np.zeros(n_chunks, dtype=np.int64)
    for chunk in numba.prange(n_chunks):
        start = chunk * SCAN_CHUNK
        non_finite[chunk], negative[chunk], non_integer[chunk] = _scan(values[start : start + SCAN_CHUNK])
    return non_finite.sum(), negative.sum(), non_integer.sum()


@numba.njit(parallel=True, cache=True)
def scan_rows(x):
    """Scan a 2-D array (any memory layout) one row per parallel task."""
    n_rows = x.shape[0]
    non_finite = np.zeros(n_rows, dtype=np.int64)
    negative = np.zeros(n_rows, dtype=np.int64)
    non_integer = np.zeros(n_rows, dtype=np.int64)
    for i in numba.prange(n_rows):
        non_finite[i], negative[i], non_integer[i] = _scan(x[i])
    return non_finite.sum(), negative.sum(), non_integer.sum()
