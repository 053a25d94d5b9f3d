"""cellrep: single-cell representations on AnnData.

``import cellrep as cr`` gives ``cr.pp`` (numba normalization), ``cr.tl`` (linear
representations and label transfer), ``cr.pl`` (plots), ``cr.model`` (the transformer
cell encoder, a scvi-tools model), ``cr.datasets`` and ``cr.benchmark``.

Submodules load on first attribute access, so ``import cellrep`` stays fast and torch
and scvi-tools are only imported when ``cr.model`` is used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from ._settings import settings

try:
    __version__ = version("cellrep")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_SUBMODULES = ("pp", "tl", "pl", "model", "datasets", "benchmark")

__all__ = [*_SUBMODULES, "__version__", "persist_counts", "read_lazy", "settings"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in ("read_lazy", "persist_counts"):
        from . import _io

        return getattr(_io, name)
    raise AttributeError(f"module 'cellrep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
