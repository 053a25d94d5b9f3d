"""A synthetic count matrix with cell-type structure, generated chunk by chunk as a dask array.

Used by ``bench_dask.py`` and the lazy-file test: ``n_groups`` cell types, each with 5 % of
the genes raised eightfold over a shared gamma-distributed profile; every cell draws
``nnz_per_cell`` reads from its type's profile (a multinomial, so some genes repeat and the
stored non-zeros are a little fewer). A chunk depends only on its seed, so the matrix is
written to disk without ever being in memory.
"""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
from scipy import sparse

import dask

MARKER_FRACTION = 0.05
MARKER_FOLD = 8.0


def group_profiles(n_genes: int, n_groups: int, seed: int = 0) -> np.ndarray:
    """Gene probabilities of every group (groups × genes, rows sum to 1)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.3, 1.0, size=n_genes) + 1e-3
    profiles = np.tile(base, (n_groups, 1))
    n_markers = max(1, int(MARKER_FRACTION * n_genes))
    for group in range(n_groups):
        profiles[group, rng.choice(n_genes, n_markers, replace=False)] *= MARKER_FOLD
    return profiles / profiles.sum(axis=1, keepdims=True)


def group_codes(n_cells: int, n_groups: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, 1]).integers(0, n_groups, size=n_cells)


def _chunk(groups: np.ndarray, profiles: np.ndarray, nnz_per_cell: int, seed: tuple) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    n_cells, n_genes = groups.size, profiles.shape[1]
    rows, columns = [], []
    for group in np.unique(groups):
        cells = np.flatnonzero(groups == group)
        drawn = rng.choice(n_genes, size=(cells.size, nnz_per_cell), p=profiles[group])
        rows.append(np.repeat(cells, nnz_per_cell))
        columns.append(drawn.ravel())
    values = np.ones(n_cells * nnz_per_cell, dtype=np.float32)
    counts = sparse.csr_matrix(
        (values, (np.concatenate(rows), np.concatenate(columns))), shape=(n_cells, n_genes)
    )
    counts.sum_duplicates()
    return counts


def synthetic_counts(
    n_cells: int,
    n_genes: int,
    *,
    nnz_per_cell: int = 100,
    n_groups: int = 20,
    chunk_size: int = 10_000,
    seed: int = 0,
    cell_seed: int | None = None,
) -> ad.AnnData:
    """AnnData with lazy float32 CSR counts (dask, ``chunk_size`` cells per chunk) and ``obs['group']``.

    ``seed`` fixes the group profiles, ``cell_seed`` (default ``seed``) the cells: two matrices
    with the same ``seed`` and different ``cell_seed`` are a reference and a query of the same types.
    """
    profiles = group_profiles(n_genes, n_groups, seed)
    cell_seed = seed if cell_seed is None else cell_seed
    groups = group_codes(n_cells, n_groups, cell_seed)
    meta = sparse.csr_matrix((0, 0), dtype=np.float32)
    chunks = []
    for index, start in enumerate(range(0, n_cells, chunk_size)):
        stop = min(start + chunk_size, n_cells)
        block = dask.delayed(_chunk, pure=True)(
            groups[start:stop], profiles, nnz_per_cell, (cell_seed, index)
        )
        chunks.append(da.from_delayed(block, shape=(stop - start, n_genes), dtype=np.float32, meta=meta))
    obs = pd.DataFrame(
        {"group": pd.Categorical([f"type{code:02d}" for code in groups])},
        index=pd.RangeIndex(n_cells).astype(str),
    )
    var = pd.DataFrame(index=[f"gene{index}" for index in range(n_genes)])
    return ad.AnnData(da.concatenate(chunks), obs=obs, var=var)
