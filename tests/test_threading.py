"""Kernel calls from several Python threads must not abort the process under any numba threading layer.

numba's ``workqueue`` layer (its fallback when neither TBB nor OpenMP is usable) is not
thread-safe: concurrent parallel kernels abort with "Concurrent access has been detected"
(exit 134). cellrep serializes kernel entry under that layer. The test forces the layer in a
subprocess, so a regression kills the subprocess, not the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np, anndata as ad, numba
    from concurrent.futures import ThreadPoolExecutor
    from scipy import sparse
    import cellrep as cr

    rng = np.random.default_rng(0)
    counts = sparse.csr_matrix(rng.poisson(1.0, size=(400, 300)).astype(np.float32))
    labels = np.array(["a", "b", "c", "d"])[np.arange(400) % 4]

    def pipeline(seed):
        adata = ad.AnnData(counts.copy())
        adata.obs["cell_type"] = labels
        cr.pp.rank_probit(adata)
        cr.pp.log_normalize(adata)
        cr.pp.select_genes(adata, labels_key="cell_type", n_top=50)
        cr.tl.pca(adata, n_comps=5, random_state=seed)
        return float(np.abs(adata.obsm["X_pca"]).sum())

    expected = pipeline(0)  # also compiles, in one thread
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(pipeline, [0] * 8))
    assert np.allclose(results, expected), (results, expected)
    try:
        layer = numba.threading_layer()
    except ValueError:  # NUMBA_DISABLE_JIT=1: no parallel layer at all
        layer = "none"
    print("layer", layer, "ok", len(results))
    """
)


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_concurrent_calls_do_not_abort(layer):
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("CELLREP_NUM_THREADS", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if os.environ.get("NUMBA_DISABLE_JIT") != "1" and layer != "default":
        assert f"layer {layer} ok 8" in result.stdout
    else:
        assert "ok 8" in result.stdout
