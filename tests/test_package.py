import subprocess
import sys

import cellrep as cr


def test_namespaces_are_exposed():
    for name in ("pp", "tl", "pl", "model", "datasets", "benchmark"):
        assert name in dir(cr)
    assert isinstance(cr.__version__, str)
    assert cr.__version__


def test_import_does_not_load_torch_scanpy_or_scvi():
    code = "import sys, cellrep; print(sorted(m for m in ('torch', 'scvi', 'scanpy', 'lightning') if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
