"""Tokenization of a count minibatch into padded gene/value token sequences.

Everything here is vectorised torch on the non-zero entries of the minibatch (taken
straight from a sparse CSR/CSC/COO tensor, or from the non-zeros of a dense one), so the
same code runs on CPU and GPU and there is no per-cell Python loop. The ordering of the
entries is done with stable sorts (by gene, then by expression, then by cell), which
gives for every cell its genes in descending expression with ties broken by gene index.
"""

from __future__ import annotations

import dataclasses

import torch

SCHEMES = ("equal_bins", "adaptive_bins", "rank", "value")
TARGET_SUM = 1e4


@dataclasses.dataclass
class Tokens:
    """A padded token batch; position 0 of every sequence is the CLS token.

    Attributes
    ----------
    gene_ids
        ``(cells, length)`` gene vocabulary ids (``n_genes`` = CLS, ``n_genes + 1`` = PAD,
        ``n_genes + 2`` = MASK).
    value_ids
        ``(cells, length)`` discrete value ids: the bin for the bin schemes, the rank for
        ``'rank'``; ``n_value_ids`` (MASK) and ``n_value_ids + 1`` (none: CLS and PAD) are special.
    values
        ``(cells, length)`` log-normalized expression (``log1p`` of counts per 10k).
    padding_mask
        ``(cells, length)``, True where there is no token.
    value_masked
        ``(cells, length)``, True where the MLM objective hid the value.
    """

    gene_ids: torch.Tensor
    value_ids: torch.Tensor
    values: torch.Tensor
    padding_mask: torch.Tensor
    value_masked: torch.Tensor

    def replace(self, **changes) -> Tokens:
        return dataclasses.replace(self, **changes)

    @property
    def gene_token_mask(self) -> torch.Tensor:
        """True at real (non-CLS, non-padding) gene tokens."""
        mask = ~self.padding_mask
        mask[:, 0] = False
        return mask


def nonzero_entries(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(rows, cols, values)`` of the positive entries of a dense or sparse 2-D tensor."""
    if x.layout == torch.sparse_csr:
        counts_per_row = x.crow_indices().diff()
        rows = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), counts_per_row)
        cols, values = x.col_indices(), x.values()
    elif x.layout == torch.strided:
        rows, cols = torch.nonzero(x, as_tuple=True)
        values = x[rows, cols]
    else:  # CSC or COO
        coo = x.to_sparse_coo().coalesce()
        rows, cols = coo.indices()
        values = coo.values()
    positive = values > 0
    return rows[positive], cols[positive].long(), values[positive]


def _sort_within_rows(rows, cols, key, integer_key: bool = False):
    """Permutation putting entries in row order, then descending key, then ascending column."""
    in_column_order = bool(((cols[1:] > cols[:-1]) | (rows[1:] != rows[:-1])).all()) if cols.numel() else True
    order = (
        torch.arange(cols.numel(), device=cols.device)
        if in_column_order
        else torch.argsort(cols, stable=True)
    )
    if integer_key and key.numel():
        # one stable sort on (row, -key): exact in int64 for counts below 2**62 / n_cells
        largest = int(key.max().item()) + 1
        composite = rows[order] * largest + (largest - 1 - key[order].long())
        return order[torch.argsort(composite, stable=True)]
    order = order[torch.argsort(key[order], descending=True, stable=True)]
    return order[torch.argsort(rows[order], stable=True)]


def tokenize(
    x: torch.Tensor,
    *,
    n_genes: int,
    max_seq_len: int,
    scheme: str,
    n_bins: int,
    gene_scale: torch.Tensor | None = None,
    gene_mask: torch.Tensor | None = None,
) -> Tokens:
    """Turn a count minibatch ``x`` (cells × genes) into a padded token batch.

    Only non-zero genes (and, with ``gene_mask``, only genes where it is True) become tokens;
    CP10k uses the cell's total over all genes. A cell with more than ``max_seq_len`` of them keeps
    its top ``max_seq_len`` genes by expression (by expression divided by ``gene_scale``
    for ``'rank'``, as Geneformer ranks genes relative to their typical level). Sequences are
    padded to the longest one in the batch plus the CLS token in front.

    Value ids per scheme:

    - ``'equal_bins'``: ``min(floor(log1p(counts / total * 1e4)), n_bins - 1)``;
    - ``'adaptive_bins'``: per-cell quantile bins of the non-zero values,
      ``ceil(n_bins * F(v)) - 1`` with ``F`` the cell's empirical CDF over its non-zero genes;
    - ``'rank'``: the 0-based rank of the gene in the cell's ordering;
    - ``'value'``: the continuous ``values`` carry the information (value ids are 0).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"tokenization must be one of {SCHEMES}, got {scheme!r}.")
    n_cells = x.shape[0]
    device = x.device
    rows, cols, counts = nonzero_entries(x)
    counts = counts.double()
    library_size = torch.zeros(n_cells, dtype=torch.float64, device=device).index_add_(0, rows, counts)
    log_values = torch.log1p(counts / library_size[rows] * TARGET_SUM)
    if gene_mask is not None:  # library sizes count every gene; only the masked-in genes become tokens
        kept_genes = gene_mask[cols]
        rows, cols, counts, log_values = (
            rows[kept_genes],
            cols[kept_genes],
            counts[kept_genes],
            log_values[kept_genes],
        )

    sort_key = (
        log_values / gene_scale[cols].double() if scheme == "rank" and gene_scale is not None else counts
    )
    integer_key = scheme != "rank" or gene_scale is None
    integer_key = integer_key and bool((counts == torch.floor(counts)).all())
    order = _sort_within_rows(rows, cols, sort_key, integer_key)
    rows, cols, counts, log_values, sort_key = (
        rows[order],
        cols[order],
        counts[order],
        log_values[order],
        sort_key[order],
    )

    n_nonzero = torch.bincount(rows, minlength=n_cells)
    row_start = torch.cumsum(n_nonzero, 0) - n_nonzero
    entry_index = torch.arange(rows.numel(), device=device)
    position = entry_index - row_start[rows]

    if scheme == "equal_bins":
        value_ids = torch.clamp(torch.floor(log_values), max=n_bins - 1).long()
    elif scheme == "adaptive_bins":
        # number of the cell's non-zero values strictly greater than this one
        starts_tie_group = (position == 0) | (sort_key != torch.roll(sort_key, 1))
        n_greater = torch.cummax(torch.where(starts_tie_group, entry_index, 0), 0).values - row_start[rows]
        n_row = n_nonzero[rows]
        value_ids = (n_bins * (n_row - n_greater) + n_row - 1) // n_row - 1
    elif scheme == "rank":
        value_ids = position
    else:
        value_ids = torch.zeros_like(position)

    kept = position < max_seq_len
    length = int(torch.clamp(n_nonzero, max=max_seq_len).max().item()) + 1 if n_cells else 1
    special_value = n_value_ids(scheme, n_bins, max_seq_len) + 1
    gene_ids = torch.full((n_cells, length), n_genes + 1, dtype=torch.long, device=device)
    value_id_matrix = torch.full((n_cells, length), special_value, dtype=torch.long, device=device)
    value_matrix = torch.zeros((n_cells, length), dtype=torch.float32, device=device)
    padding_mask = torch.ones((n_cells, length), dtype=torch.bool, device=device)
    target = (rows[kept], position[kept] + 1)
    gene_ids[target] = cols[kept]
    value_id_matrix[target] = value_ids[kept]
    value_matrix[target] = log_values[kept].float()
    padding_mask[target] = False
    gene_ids[:, 0] = n_genes
    padding_mask[:, 0] = False
    return Tokens(gene_ids, value_id_matrix, value_matrix, padding_mask, torch.zeros_like(padding_mask))


def n_value_ids(scheme: str, n_bins: int, max_seq_len: int) -> int:
    """Number of ordinary value ids of a scheme (the MASK id equals this number)."""
    return max_seq_len if scheme == "rank" else n_bins
