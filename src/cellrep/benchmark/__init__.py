"""Benchmark harness: cellrep's linear label transfer side by side with scanpy, scTOP and scVI.

>>> from cellrep.benchmark import run_benchmark, results_table
>>> results = run_benchmark(adata, "cell_type", tasks=["within"])
>>> print(results_table(results))

The command line ``cellrep benchmark`` runs it on the embedded default dataset or on files.
Names load on first access, so that ``cellrep --help`` (``cellrep.benchmark._cli``) does not
import the harness.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DEFAULT_METHODS": "._methods",
    "METHODS": "._methods",
    "Method": "._methods",
    "cellrep_method": "._methods",
    "results_table": "._report",
    "summarize": "._report",
    "write_outputs": "._report",
    "evaluate": "._run",
    "run_benchmark": "._run",
    "TASKS": "._tasks",
    "make_splits": "._tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellrep.benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
