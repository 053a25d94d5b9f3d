"""Package-wide settings: the thread limit honoured by every numba kernel."""

from __future__ import annotations

import os
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


@contextmanager
def numba_threads(n_threads: int | None = None) -> Iterator[None]:
    """Limit numba's parallel threads for the duration of a block.

    Parameters
    ----------
    n_threads
        Threads to use; falls back to ``cellrep.settings.n_threads``; ``None`` keeps numba's default.
    """
    import numba

    limit = n_threads if n_threads is not None else settings.n_threads
    if limit is None:
        yield
        return
    if limit < 1:
        raise ValueError(f"n_threads must be a positive integer, got {limit}.")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(limit, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
