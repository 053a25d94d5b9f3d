"""Where the first-run numba compilation of the main job goes: compile time per jitted function.

Run with an empty numba cache so that everything compiles:

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/profile_compile.py cellrep_default souza_mehta

Fits and predicts the named benchmark methods once on a within-dataset split of the embedded
dataset and prints, per jitted function, the wall time of its compile events (a function's time
includes the functions it compiles in turn, so the column does not add up).
"""

from __future__ import annotations

import collections
import sys
import time
import warnings

from numba.core import event

totals: collections.Counter = collections.Counter()
starts: dict = {}


class CompileTimer(event.Listener):
    def _key(self, ev):
        function = ev.data["dispatcher"].py_func
        return f"{function.__module__}.{function.__qualname__}", (
            id(ev.data["dispatcher"]),
            str(ev.data["args"]),
        )

    def on_start(self, ev):
        starts[self._key(ev)[1]] = time.perf_counter()

    def on_end(self, ev):
        name, key = self._key(ev)
        totals[name] += time.perf_counter() - starts.pop(key, time.perf_counter())


def main(method_names: list[str]) -> None:
    event.register("numba:compile", CompileTimer())
    warnings.simplefilter("ignore")
    import cellrep as cr
    from cellrep.benchmark._methods import resolve_methods
    from cellrep.benchmark._run import evaluate
    from cellrep.benchmark._tasks import make_splits

    adata = cr.datasets.pbmc68k_reduced_counts()
    split = make_splits(adata, "bulk_labels", tasks=["within"], seeds=[0])[0]
    start = time.perf_counter()
    for method in resolve_methods(method_names):
        method_start = time.perf_counter()
        evaluate(method, split, "bulk_labels", 0)
        print(f"{method.name}: {time.perf_counter() - method_start:.1f} s", flush=True)
    print(f"total: {time.perf_counter() - start:.1f} s")
    for name, seconds in totals.most_common(25):
        print(f"{seconds:8.1f} s  {name}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["cellrep_default", "souza_mehta"])
