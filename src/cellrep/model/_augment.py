"""Random augmentations: binomial thinning of the counts, gene subsampling and MLM masking.

All random draws use torch's global generator, so the divide-and-conquer training plan
can replay them exactly by restoring the RNG state.
"""

from __future__ import annotations

import torch

from ._tokenize import Tokens


def binomial_thin(x: torch.Tensor, min_fraction: float) -> torch.Tensor:
    """Keep each count with a per-cell probability ``p ~ U(min_fraction, 1)``.

    Every count ``x_ij`` becomes ``Binomial(x_ij, p_i)``: integers stay integers, the expected
    count is ``p_i x_ij`` and the cell looks sequenced at a depth ``p_i`` times lower (the
    thinning argument of Poisson/multinomial sampling). ``x`` is a dense or sparse CSR count
    tensor; the result has the same layout (zeros it creates stay stored in a CSR tensor).
    ``min_fraction >= 1`` returns ``x`` unchanged.
    """
    if min_fraction >= 1:
        return x
    n_cells = x.shape[0]
    keep = min_fraction + (1 - min_fraction) * torch.rand(n_cells, device=x.device, dtype=torch.float64)
    if x.layout == torch.sparse_csr:
        rows = torch.repeat_interleave(torch.arange(n_cells, device=x.device), x.crow_indices().diff())
        values = x.values()
        thinned = torch.binomial(values.double(), keep[rows]).to(values.dtype)
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), thinned, size=x.shape)
    if x.layout != torch.strided:
        x = x.to_sparse_csr()
        return binomial_thin(x, min_fraction)
    return torch.binomial(x.double(), keep[:, None].expand_as(x).contiguous()).to(x.dtype)


def n_tokens_to_mask(n_tokens: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """``round(mask_ratio * n)`` tokens per cell (halves round up), at least one if the cell has any."""
    if mask_ratio <= 0:
        return torch.zeros_like(n_tokens)
    n_masked = torch.floor(mask_ratio * n_tokens.double() + 0.5).long()
    return torch.minimum(torch.clamp(n_masked, min=1), n_tokens)


def choose_per_row(candidates: torch.Tensor, n_chosen: torch.Tensor) -> torch.Tensor:
    """Pick ``n_chosen[i]`` uniformly random True positions of ``candidates[i]`` for every row."""
    scores = torch.rand(candidates.shape, device=candidates.device)
    scores = scores.masked_fill(~candidates, 2.0)
    rank = torch.argsort(torch.argsort(scores, dim=1), dim=1)
    return (rank < n_chosen[:, None]) & candidates


def subsample_genes(tokens: Tokens, drop_rate: float) -> Tokens:
    """Drop ``round(drop_rate * n)`` random gene tokens of each cell (a cell keeps at least one gene).

    A fixed number per cell (rather than independent coin flips) keeps cells of equal length
    at equal length, so a batch of full-length cells stays unpadded after :func:`repack`.
    """
    if drop_rate <= 0:
        return tokens
    genes = tokens.gene_token_mask
    n_genes = genes.sum(1)
    n_dropped = torch.minimum(
        torch.floor(drop_rate * n_genes.double() + 0.5).long(), (n_genes - 1).clamp_min(0)
    )
    dropped = choose_per_row(genes, n_dropped)
    return tokens.replace(padding_mask=tokens.padding_mask | dropped)


def repack(tokens: Tokens) -> Tokens:
    """Move every cell's tokens to the front (order kept) and cut the columns that are padding everywhere.

    Subsampling turns tokens into padding; without repacking, attention and MLP would still run
    on them. The result encodes to the same cell states (cells are encoded independently).
    """
    order = torch.argsort(tokens.padding_mask.to(torch.int8), dim=1, stable=True)
    length = int((~tokens.padding_mask).sum(1).max().item()) if tokens.padding_mask.shape[0] else 1
    order = order[:, :length]
    gather = lambda field: torch.gather(field, 1, order)  # noqa: E731
    return Tokens(
        gather(tokens.gene_ids),
        gather(tokens.value_ids),
        gather(tokens.values),
        gather(tokens.padding_mask),
        gather(tokens.value_masked),
    )


def mask_tokens(tokens: Tokens, mask_ratio: float) -> Tokens:
    """Mark ``round(mask_ratio * n)`` random gene tokens of each cell (never CLS or padding) as masked."""
    genes = tokens.gene_token_mask
    masked = choose_per_row(genes, n_tokens_to_mask(genes.sum(1), mask_ratio))
    return tokens.replace(value_masked=masked)
