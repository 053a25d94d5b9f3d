"""The embedded default dataset: scanpy's bundled PBMC68k subset turned back into counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

#: Scale of scanpy's ``normalize_total`` that produced ``pbmc68k_reduced().raw``.
_TARGET_SUM = 1e4


def pbmc68k_reduced_counts():
    """700 PBMCs with Zheng et al.'s cell-type labels as integer counts; works offline.

    scanpy ships :func:`scanpy.datasets.pbmc68k_reduced` inside its wheel, with
    ``raw.X = log1p(counts / n_counts * 1e4)`` for 765 highly variable genes. This function
    inverts that transform, ``round(expm1(raw.X) * n_counts / 1e4)``, so the values before
    rounding are within 0.1 of an integer. Because only 765 genes are kept, row sums are smaller
    than the true library size, which stays available in ``obs['total_counts_all_genes']``.

    Returns
    -------
    :class:`~anndata.AnnData` with

    - ``X``: integer counts as a CSR ``float32`` matrix (700 cells × 765 genes, names from ``raw``);
    - ``obs['bulk_labels']``: Zheng's labels (10 types), also copied to ``obs['cell_type']``
      so the default matches the ``cell_type`` convention of the other loaders;
    - ``obs['batch']`` (a single value, ``'pbmc68k'``) and ``obs['species']`` (``'human'``);
    - ``obs['total_counts_all_genes']``: the library size over all genes (scanpy's ``n_counts``);
    - ``uns['bulk_labels_colors']`` and ``uns['cell_type_colors']``: scanpy's palette.

    Examples
    --------
    >>> import cellrep as cr
    >>> adata = cr.datasets.pbmc68k_reduced_counts()
    >>> adata.shape
    (700, 765)
    """
    import anndata as ad
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    log_cp10k = sparse.csr_matrix(reduced.raw.X, dtype=np.float64)
    library_size = reduced.obs["n_counts"].to_numpy(dtype=np.float64)
    counts = sparse.diags(library_size / _TARGET_SUM) @ log_cp10k.expm1()
    counts.data = np.round(counts.data)
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    counts.eliminate_zeros()

    labels = reduced.obs["bulk_labels"]
    obs = pd.DataFrame(
        {
            "bulk_labels": labels,
            "cell_type": labels.copy(),
            "batch": pd.Categorical(["pbmc68k"] * reduced.n_obs),
            "species": pd.Categorical(["human"] * reduced.n_obs),
            "total_counts_all_genes": library_size,
        },
        index=reduced.obs_names.copy(),
    )
    adata = ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=reduced.raw.var_names.copy()))
    colors = list(reduced.uns["bulk_labels_colors"])
    adata.uns["bulk_labels_colors"] = np.array(colors)
    adata.uns["cell_type_colors"] = np.array(colors)
    adata.uns["source"] = (
        "scanpy.datasets.pbmc68k_reduced (Zheng et al. 2017, Nat Commun 8:14049) with counts "
        "reconstructed as round(expm1(raw.X) * n_counts / 1e4)"
    )
    return adata
