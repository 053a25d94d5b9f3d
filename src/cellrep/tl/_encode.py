"""AnnData wrappers around a trained :class:`cellrep.model.CellEncoder`."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._validation import store_params


def encode(
    adata,
    model,
    *,
    key_added: str = "X_cellencoder",
    pooling: str | None = None,
    batch_size: int | None = None,
) -> None:
    """Write the cell embeddings of ``model`` to ``adata.obsm[key_added]``.

    ``adata`` may be the training data or a query: it is aligned to the model genes by name
    (missing genes are treated as not expressed, with a warning). Parameters go to
    ``adata.uns['cellencoder']['params']``.

    Parameters
    ----------
    adata
        AnnData with raw counts in the layer the model was set up with.
    model
        A trained :class:`cellrep.model.CellEncoder`.
    key_added
        ``obsm`` key of the embedding.
    pooling
        ``'mean'`` (mean of the gene-token states) or ``'cls'``; default: the model's.
    batch_size
        Cells encoded at once.
    """
    latent = model.get_latent_representation(adata, pooling=pooling, batch_size=batch_size)
    adata.obsm[key_added] = latent
    params = {
        "pooling": pooling or model.module.pooling,
        "key_added": key_added,
        "model": model._model_summary_string,
    }
    store_params(adata, "cellencoder", params)


def gene_attention(
    adata,
    model,
    *,
    genes=None,
    layer: int = -1,
    key_added: str = "gene_attention",
    batch_size: int | None = 64,
) -> None:
    """Write the gene × gene attention of ``model`` to ``adata.varp[key_added]`` (sparse CSR).

    Entry ``(a, b)`` is the attention from gene ``a``'s token to gene ``b``'s token in block
    ``layer``, averaged over heads and over the cells of ``adata`` expressing both genes;
    genes outside ``genes`` (default: all model genes) or not in the model have empty rows.

    Parameters
    ----------
    adata
        AnnData with raw counts; its cells are the ones averaged over.
    model
        A trained :class:`cellrep.model.CellEncoder`.
    genes
        Genes to include (names); ``None`` for all model genes.
    layer
        Transformer block whose attention is read (negative counts from the end).
    key_added
        ``varp`` key.
    batch_size
        Cells processed at once.
    """
    attention = model.get_gene_attention(adata, genes=genes, layer=layer, batch_size=batch_size)
    if sparse.issparse(attention):
        names = model.adata.var_names
    else:
        names, attention = attention.index, sparse.csr_matrix(attention.to_numpy())
    positions = adata.var_names.get_indexer(names)
    present = positions >= 0
    # P maps the model's gene order onto adata's var order (genes adata lacks are dropped)
    mapping = sparse.csr_matrix(
        (np.ones(present.sum(), dtype=np.float32), (np.flatnonzero(present), positions[present])),
        shape=(len(names), adata.n_vars),
    )
    adata.varp[key_added] = sparse.csr_matrix(mapping.T @ attention @ mapping, dtype=np.float32)
    store_params(adata, key_added, {"genes": None if genes is None else list(genes), "layer": layer})
