"""One parallel read of the stored values for input validation.

A scan returns ``(n_non_finite, n_negative, n_non_integer)`` in a single pass and allocates
nothing of the data's size (``np.isfinite`` would build a boolean temporary as large as the
data). Infinite values are not counted as non-integer; NaN counts as non-integer.

The loops use only comparisons, ``floor`` and int32 counts, so LLVM vectorises them eight or
sixteen values wide (a running float minimum does not vectorise and made the scan twice as
slow; int64 counts kept it four wide and 1.5x slower). Each block of ``SCAN_BLOCK`` values is
first read by a vectorised sum, which streams it from memory with many loads in flight
(about 1.2x faster out of cache). No fastmath in the counting loops: it would assume that
NaN and infinity never occur.
"""

import numba
import numpy as np

# values per parallel task of the flat scan
SCAN_CHUNK = 1 << 16
# values counted at a time, after being read ahead; int32 counts cannot overflow
SCAN_BLOCK = 1 << 11


@numba.njit(fastmath={"reassoc"})  # reassociation only, so that the sum vectorises
def _read_ahead(values):
    total = 0.0
    for j in range(values.size):
        total += values[j]
    return total


@numba.njit(inline="always")
def _scan_block(values):
    # numba would widen ``int32 + bool`` to int64; converting back keeps the vectors int32
    n_non_finite = np.int32(0)
    n_negative = np.int32(0)
    n_non_integer = np.int32(0)
    for j in range(values.size):
        value = values[j]
        n_non_finite = np.int32(n_non_finite + (not abs(value) < np.inf))  # False only for NaN and ±inf
        n_negative = np.int32(n_negative + (value < 0))
        n_non_integer = np.int32(n_non_integer + (value != np.floor(value)))
    return n_non_finite, n_negative, n_non_integer


@numba.njit(inline="always")
def _scan(values):
    """Counts of one 1-D slice, block by block, each block read ahead of its count."""
    n_non_finite = 0
    n_negative = 0
    n_non_integer = 0
    read_ahead = 0.0
    for start in range(0, values.size, SCAN_BLOCK):
        read_ahead += _read_ahead(values[start + SCAN_BLOCK : start + 2 * SCAN_BLOCK])
        block_counts = _scan_block(values[start : start + SCAN_BLOCK])
        n_non_finite += block_counts[0]
        n_negative += block_counts[1]
        n_non_integer += block_counts[2]
    return n_non_finite, n_negative, n_non_integer, read_ahead


@numba.njit(parallel=True, cache=True)
def scan_flat(values):
    """Scan a 1-D array in parallel chunks of ``SCAN_CHUNK`` values.

    Returns the three counts, then the sum of the values read ahead (which only keeps that
    read from being optimised away).
    """
    n_chunks = (values.size + SCAN_CHUNK - 1) // SCAN_CHUNK
    non_finite = np.zeros(n_chunks, dtype=np.int64)
    negative = np.zeros(n_chunks, dtype=np.int64)
    non_integer = np.zeros(n_chunks, dtype=np.int64)
    read_ahead = np.zeros(n_chunks)
    for chunk in numba.prange(n_chunks):
        start = chunk * SCAN_CHUNK
        non_finite[chunk], negative[chunk], non_integer[chunk], read_ahead[chunk] = _scan(
            values[start : start + SCAN_CHUNK]
        )
    return non_finite.sum(), negative.sum(), non_integer.sum(), read_ahead.sum()


@numba.njit(parallel=True, cache=True)
def scan_rows(x):
    """Scan a 2-D array (any memory layout) one row per parallel task; returns like :func:`scan_flat`."""
    n_rows = x.shape[0]
    non_finite = np.zeros(n_rows, dtype=np.int64)
    negative = np.zeros(n_rows, dtype=np.int64)
    non_integer = np.zeros(n_rows, dtype=np.int64)
    read_ahead = np.zeros(n_rows)
    for i in numba.prange(n_rows):
        non_finite[i], negative[i], non_integer[i], read_ahead[i] = _scan(x[i])
    return non_finite.sum(), negative.sum(), non_integer.sum(), read_ahead.sum()
