"""The one gene-overlap rule of label transfer, shared by ``cr.tl.transfer_labels`` and the benchmark harness."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: fewer shared genes raise: too few to tell cell types apart
MIN_SHARED_GENES = 20
#: fewer shared genes than this fraction of the smaller gene panel warn: the query misses genes it measured
WARN_SHARED_FRACTION = 0.5
#: fewer shared genes than this warn even when they are the whole smaller panel. Measured on
#: pbmc68k_reduced (765 genes; every 5th cell a query restricted to k random genes, 3 draws;
#: ``python benchmarks/shared_genes_panel.py``): macro-F1 0.69 with all genes, 0.61 at 300, 0.58 at 200,
#: 0.58 at 150, 0.46 at 80 and 0.31 at 40 shared genes, with 4 %, 9 %, 10 %, 11 %, 20 % and
#: 40 % of the known cells called unknown. Below ~200 the loss grows fast.
WARN_SHARED_GENES = 200


def shared_genes(ref_genes, query_genes) -> np.ndarray:
    """The genes of ``ref_genes`` also in ``query_genes`` (reference order), under the one overlap rule.

    Every ``transfer_labels`` method and the ``cellrep benchmark`` cross tasks use this rule:
    fewer than ``MIN_SHARED_GENES`` (20) shared genes raise a ValueError (too few to tell cell
    types apart); fewer than ``WARN_SHARED_GENES`` (200), or fewer than ``WARN_SHARED_FRACTION``
    (half) of the smaller gene panel, warn with the figures. A query measured on a panel of a
    few thousand genes that the reference covers (2 000 of 30 000 genes, say) passes silently:
    all of its genes are usable.

    Parameters
    ----------
    ref_genes, query_genes
        Gene names of the reference and the query (unique).

    Returns
    -------
    The shared gene names, in reference order (str array).
    """
    ref_index, query_index = pd.Index(ref_genes).astype(str), pd.Index(query_genes).astype(str)
    for index, name in ((ref_index, "ref"), (query_index, "query")):
        if not index.is_unique:
            raise ValueError(f"{name}.var_names are not unique; call `{name}.var_names_make_unique()` first.")
    shared = ref_index[ref_index.isin(query_index)]
    smaller = min(ref_index.size, query_index.size)
    figures = (
        f"{shared.size} genes are shared by the reference ({ref_index.size} genes) and the query "
        f"({query_index.size} genes), {shared.size / max(smaller, 1):.0%} of the smaller panel"
    )
    if shared.size < MIN_SHARED_GENES:
        raise ValueError(
            f"Only {figures}; at least {MIN_SHARED_GENES} are needed. Check that both use the same gene "
            "identifiers (symbols vs Ensembl IDs) and species; use `cr.tl.map_orthologs` across species."
        )
    if shared.size < WARN_SHARED_GENES or shared.size < WARN_SHARED_FRACTION * smaller:
        warnings.warn(
            f"Only {figures} (a transfer is reliable from {WARN_SHARED_GENES} shared genes and half of the "
            "smaller panel); features are chosen among these, and types told apart by other genes may be "
            "confused or called unknown.",
            UserWarning,
            stacklevel=3,
        )
    return shared.to_numpy()
