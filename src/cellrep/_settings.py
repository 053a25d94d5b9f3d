"""Package-wide settings: the thread limit honoured by every numba kernel, and safe kernel entry from many threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Settings:
    """Global cellrep settings.

    Attributes
    ----------
    n_threads
        Upper bound on the threads numba kernels use. ``None`` means numba's own default
        (``NUMBA_NUM_THREADS``, usually the number of cores).
    """

    def __init__(self) -> None:
        env_value = os.environ.get("CELLREP_NUM_THREADS")
        self.n_threads: int | None = int(env_value) if env_value else None

    def __repr__(self) -> str:
        return f"cellrep.settings(n_threads={self.n_threads})"


settings = _Settings()


# numba's threading layers that may run parallel kernels from several Python threads at once;
# ``workqueue`` (numba's fallback when neither TBB nor OpenMP is usable) aborts the process instead
THREAD_SAFE_LAYERS = ("tbb", "omp")
_kernel_lock = threading.RLock()


def _layer_is_thread_safe() -> bool:
    import numba

    try:
        return numba.threading_layer() in THREAD_SAFE_LAYERS
    except ValueError:  # no parallel kernel ran yet (or JIT disabled): the layer is not chosen yet
        return False


@contextmanager
def _kernel_entry() -> Iterator[None]:
    """Serialize kernel calls across Python threads unless numba's threading layer is thread-safe."""
    if _layer_is_thread_safe():
        yield
        return
    with _kernel_lock:
        yield


@contextmanager
def numba_threads(n_threads: int | None = None) -> Iterator[None]:
    """Limit numba's parallel threads for the duration of a block, and make the block safe to enter from many threads.

    Every numba kernel call of cellrep runs inside this block. Under numba's ``workqueue``
    threading layer, which is not thread-safe (numba aborts the process on concurrent use),
    the blocks of different Python threads run one after another; under ``tbb`` and ``omp``
    they run concurrently.

    Parameters
    ----------
    n_threads
        Threads to use; falls back to ``cellrep.settings.n_threads``; ``None`` keeps numba's default.
    """
    import numba

    limit = n_threads if n_threads is not None else settings.n_threads
    if limit is not None and limit < 1:
        raise ValueError(f"n_threads must be a positive integer, got {limit}.")
    with _kernel_entry():
        if limit is None:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(min(limit, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(previous)
