"""Shared fixtures: synthetic count matrices in every supported format and dtype, and the shared real data."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MATRIX_FORMATS = ("dense", "csr", "csc")
DTYPES = (np.float32, np.float64, np.int64)


def synthetic_counts(
    n_cells: int = 60, n_genes: int = 40, *, seed: int = 0, density: float = 0.3
) -> np.ndarray:
    """Negative-binomial-like integer counts with some all-zero genes, as a dense int64 array."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.6, 2.0, size=n_genes)
    library = rng.lognormal(0.0, 0.4, size=n_cells)
    counts = rng.poisson(np.outer(library, means) * rng.gamma(2.0, 0.5, size=(n_cells, n_genes)))
    counts[rng.random((n_cells, n_genes)) > density * 2] = 0
    counts[:, :2] = 0  # all-zero genes
    counts[counts.sum(axis=1) == 0, -1] = 1  # no empty cells by default
    return counts.astype(np.int64)


def as_format(dense: np.ndarray, matrix_format: str, dtype=None):
    """Convert a dense array to ``matrix_format`` ('dense', 'csr' or 'csc') with ``dtype``."""
    array = dense if dtype is None else dense.astype(dtype)
    if matrix_format == "dense":
        return array
    return getattr(sparse, f"{matrix_format}_matrix")(array)


def make_adata(matrix, *, n_types: int = 3, seed: int = 0) -> ad.AnnData:
    """AnnData around ``matrix`` with gene names and a balanced ``cell_type`` column."""
    n_cells, n_genes = matrix.shape
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.permutation(np.arange(n_cells) % n_types).astype(str))},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(matrix, obs=obs, var=var)


@pytest.fixture(params=MATRIX_FORMATS)
def matrix_format(request) -> str:
    return request.param


@pytest.fixture(params=DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def dtype(request):
    return request.param


@pytest.fixture
def counts_adata(matrix_format, dtype) -> ad.AnnData:
    """Synthetic counts AnnData in every format × dtype combination."""
    return make_adata(as_format(synthetic_counts(), matrix_format, dtype))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def read_shared(name: str) -> ad.AnnData:
    """Read ``../shared/data/<name>.h5ad`` or skip the test when it is absent."""
    path = SHARED_DATA / f"{name}.h5ad"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return ad.read_h5ad(path)
