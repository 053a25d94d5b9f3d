"""Small labelled datasets for the benchmark harness and CLI tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

N_TYPES = 3


def labelled_counts(
    n_cells: int = 90, n_genes: int = 40, *, seed: int = 0, prefix: str = "g", n_batches: int = 2
) -> ad.AnnData:
    """CSR counts where each of three types over-expresses five marker genes, with two batches."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_cells) % N_TYPES
    rates = rng.gamma(1.0, 1.0, size=n_genes)[None, :] * np.ones((n_cells, 1))
    for cell_type in range(N_TYPES):
        rates[labels == cell_type, cell_type * 5 : cell_type * 5 + 5] += 6.0
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{k}" for k in labels]),
            "batch": pd.Categorical([f"b{i % n_batches}" for i in range(n_cells)]),
        },
        index=[f"{prefix}{seed}_cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"{prefix}{j}" for j in range(n_genes)])
    return ad.AnnData(sparse.csr_matrix(rng.poisson(rates).astype(np.float32)), obs=obs, var=var)


@pytest.fixture
def labelled() -> ad.AnnData:
    return labelled_counts()


@pytest.fixture
def human_mouse() -> tuple[ad.AnnData, ad.AnnData]:
    """A 'human' dataset with a ``mouse_ortholog`` var column and a 'mouse' dataset named in mouse genes."""
    human = labelled_counts(seed=1, prefix="H")
    human.var["mouse_ortholog"] = [f"M{j}" if j % 7 else "" for j in range(human.n_vars)]
    mouse = labelled_counts(60, seed=2, prefix="M")
    return human, mouse
