"""Benchmark harness: cellrep's linear label transfer side by side with scanpy, scTOP and scVI.

>>> from cellrep.benchmark import run_benchmark, results_table
>>> results = run_benchmark(adata, "cell_type", tasks=["within"])
>>> print(results_table(results))

The command line ``cellrep benchmark`` runs it on the embedded default dataset or on files.
"""

from ._methods import DEFAULT_METHODS, METHODS, Method, cellrep_method
from ._report import results_table, summarize, write_outputs
from ._run import evaluate, run_benchmark
from ._tasks import TASKS, make_splits

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "TASKS",
    "Method",
    "cellrep_method",
    "evaluate",
    "make_splits",
    "results_table",
    "run_benchmark",
    "summarize",
    "write_outputs",
]
