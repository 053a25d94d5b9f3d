"""Rename genes into another species through one-to-one orthologs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from .._array._aggregate import aggregate_genes

DuplicateRule = Literal["sum", "first", "drop"]


def _ortholog_series(adata, mapping, source_key: str | None, target_key: str | None) -> pd.Series:
    """The target gene of every ``adata`` gene (index: var_names), ``NaN`` where there is none."""
    if isinstance(mapping, str):
        if mapping not in adata.var.columns:
            raise ValueError(
                f"mapping {mapping!r} is not a column of adata.var (columns: {list(adata.var.columns)}). "
                "Pass the var column that holds the ortholog of each gene, or a DataFrame of 1:1 orthologs."
            )
        targets = adata.var[mapping]
    elif isinstance(mapping, pd.DataFrame):
        if mapping.shape[1] < 2 and (source_key is None or target_key is None):
            raise ValueError(
                "A mapping DataFrame needs a source and a target column (`source_key`, `target_key`)."
            )
        source_key = mapping.columns[0] if source_key is None else source_key
        target_key = mapping.columns[1] if target_key is None else target_key
        for key in (source_key, target_key):
            if key not in mapping.columns:
                raise ValueError(
                    f"Column {key!r} is not in the mapping DataFrame (columns: {list(mapping.columns)})."
                )
        pairs = mapping[[source_key, target_key]].dropna().astype(str).drop_duplicates()
        # one-to-many orthologs are ambiguous: keep only sources with a single target
        pairs = pairs[~pairs[source_key].duplicated(keep=False)]
        targets = pd.Series(pairs[target_key].to_numpy(), index=pairs[source_key].to_numpy())
    elif isinstance(mapping, Mapping | pd.Series):
        targets = pd.Series(mapping)
    else:
        raise TypeError(
            f"mapping must be a var column name, a DataFrame of 1:1 orthologs or a dict, got {type(mapping).__name__}."
        )
    targets = pd.Series(targets.to_numpy(dtype=object), index=targets.index.astype(str))
    targets = targets.reindex(adata.var_names.astype(str))
    targets = targets.where(targets.notna() & (targets.astype(str).str.strip() != ""))
    return targets.map(lambda gene: gene if pd.isna(gene) else str(gene).strip())


def _aggregation_matrix(target_codes: np.ndarray, n_targets: int, kept: np.ndarray) -> sparse.csc_matrix:
    """Genes × targets indicator: column ``t`` sums the kept genes mapped to target ``t``."""
    genes = np.flatnonzero(kept)
    return sparse.csc_matrix(
        (np.ones(genes.size, dtype=np.float64), (genes, target_codes[genes])),
        shape=(target_codes.size, n_targets),
    )


def map_orthologs(
    adata,
    mapping: str | pd.DataFrame | Mapping[str, str] | pd.Series,
    *,
    source_key: str | None = None,
    target_key: str | None = None,
    duplicates: DuplicateRule = "sum",
):
    """Return a copy of ``adata`` whose genes are named in another species.

    Genes without an ortholog are dropped. The counts of several genes mapped to the same
    target gene are summed (``duplicates='sum'``), taken from the first such gene
    (``'first'``) or dropped altogether (``'drop'``, keeping strictly one-to-one pairs).

    Parameters
    ----------
    adata
        AnnData with genes in the source species (``var_names``). ``X`` and the layers may be
        dask arrays of CSR or dense chunks of cells (:func:`cellrep.read_lazy`): they are
        mapped chunk by chunk and stay lazy.
    mapping
        The name of a ``var`` column holding each gene's ortholog (``''`` or missing means
        none, as ``'mouse_ortholog'`` in the Baron human data), a DataFrame of ortholog
        pairs, or a dict / Series from source gene to target gene.
    source_key, target_key
        Columns of a mapping DataFrame; default to its first two columns. Source genes with
        more than one target are ambiguous and ignored.
    duplicates
        What to do when several source genes map to one target gene.

    Returns
    -------
    A new AnnData with ``var_names`` in the target species, ``X`` and every layer mapped,
    ``var['source_gene']`` listing the source gene(s), and ``obs``, ``obsm``, ``obsp`` and
    ``uns`` copied. ``varm``, ``varp`` and ``raw`` are dropped (their genes no longer match).
    Each matrix keeps its dtype and storage (dense, CSR or CSC, ``csr_matrix`` or ``csr_array``;
    a dask array keeps its cell chunks).

    Raises
    ------
    ValueError
        For a ``mapping`` column that ``adata.var`` lacks, a mapping that names no gene of
        ``adata``, or an unknown ``duplicates`` rule.
    TypeError
        For a dask array chunked along genes or with CSC chunks (the message says how to rechunk).

    Examples
    --------
    >>> mouse_named = cr.tl.map_orthologs(human, "mouse_ortholog")
    >>> cr.tl.transfer_labels(mouse_named, mouse, labels_key="cell_type")
    """
    import anndata as ad

    if duplicates not in ("sum", "first", "drop"):
        raise ValueError(f"duplicates must be 'sum', 'first' or 'drop', got {duplicates!r}.")
    targets = _ortholog_series(adata, mapping, source_key, target_key)
    mapped = targets.notna().to_numpy()
    if not mapped.any():
        raise ValueError(
            "No gene of adata has an ortholog in `mapping`; check the gene identifiers and the species."
        )
    target_index = pd.Index(pd.unique(targets[mapped]))
    codes = np.full(adata.n_vars, -1)
    codes[mapped] = target_index.get_indexer(targets[mapped])
    multiplicity = np.bincount(codes[mapped], minlength=len(target_index))
    kept = mapped.copy()
    if duplicates == "drop":
        kept &= multiplicity[np.maximum(codes, 0)] == 1
    elif duplicates == "first":
        _, first_positions = np.unique(codes[mapped], return_index=True)
        kept = np.zeros(adata.n_vars, dtype=bool)
        kept[np.flatnonzero(mapped)[first_positions]] = True
    n_duplicated = int((multiplicity > 1).sum())
    if n_duplicated:
        warnings.warn(
            f"{n_duplicated} target genes have several source genes; duplicates={duplicates!r} was applied.",
            UserWarning,
            stacklevel=2,
        )
    used_targets = np.unique(codes[kept])
    recode = np.full(len(target_index), -1)
    recode[used_targets] = np.arange(used_targets.size)
    codes = np.where(kept, recode[np.maximum(codes, 0)], -1)
    indicator = _aggregation_matrix(codes, used_targets.size, kept)

    source_names = pd.Series(adata.var_names[kept].astype(str), index=codes[kept])
    var = pd.DataFrame(
        {"source_gene": source_names.groupby(level=0).agg(",".join).sort_index().to_numpy()},
        index=pd.Index(target_index[used_targets].astype(str), name=None),
    )
    return ad.AnnData(
        X=None if adata.X is None else aggregate_genes(adata.X, indicator),
        obs=adata.obs.copy(),
        var=var,
        layers={name: aggregate_genes(layer, indicator) for name, layer in adata.layers.items()},
        obsm=dict(adata.obsm.items()),
        obsp=dict(adata.obsp.items()),
        uns=adata.uns.copy(),
    )
