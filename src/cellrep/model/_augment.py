"""Random token augmentations: gene subsampling (contrastive views) and MLM masking.

All random draws use torch's global generator, so the divide-and-conquer training plan
can replay them exactly by restoring the RNG state.
"""

from __future__ import annotations

import torch

from ._tokenize import Tokens


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
    """Drop each gene token with probability ``drop_rate`` (a cell keeps at least one gene)."""
    if drop_rate <= 0:
        return tokens
    genes = tokens.gene_token_mask
    dropped = (torch.rand(genes.shape, device=genes.device) < drop_rate) & genes
    # a cell whose genes would all be dropped keeps one of them at random
    emptied = genes.any(1) & ~(genes & ~dropped).any(1)
    rescued = choose_per_row(genes & emptied[:, None], emptied.long())
    dropped &= ~rescued
    return tokens.replace(padding_mask=tokens.padding_mask | dropped)


def mask_tokens(tokens: Tokens, mask_ratio: float) -> Tokens:
    """Mark ``round(mask_ratio * n)`` random gene tokens of each cell (never CLS or padding) as masked."""
    genes = tokens.gene_token_mask
    masked = choose_per_row(genes, n_tokens_to_mask(genes.sum(1), mask_ratio))
    return tokens.replace(value_masked=masked)
