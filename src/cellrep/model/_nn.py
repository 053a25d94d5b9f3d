"""Transformer building blocks: token embedding, SDPA / FAVOR+ attention, pre-LN blocks.

There is no BatchNorm anywhere: every cell is encoded independently of the others in its
minibatch, which is what makes the chunked (divide-and-conquer) gradient exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._tokenize import Tokens


class TokenEmbedding(nn.Module):
    """Gene identity embedding plus a value embedding (discrete ids or a linear projection)."""

    def __init__(self, n_genes: int, d_model: int, scheme: str, n_value_ids: int):
        super().__init__()
        self.n_genes = n_genes
        self.scheme = scheme
        self.gene = nn.Embedding(n_genes + 3, d_model)  # + CLS, PAD, MASK
        if scheme == "value":
            self.value_projection = nn.Linear(1, d_model)
            self.value_mask = nn.Parameter(torch.zeros(d_model))
        else:
            self.value = nn.Embedding(n_value_ids + 2, d_model)  # + MASK, none
        self.n_value_ids = n_value_ids

    def set_gene_embedding(self, weights: torch.Tensor, found: torch.Tensor, freeze: bool) -> None:
        """Copy gene vectors into the rows ``found``; optionally freeze the whole table."""
        with torch.no_grad():
            self.gene.weight[: self.n_genes][found] = weights[found].to(self.gene.weight.dtype)
        self.gene.weight.requires_grad_(not freeze)

    def scale_value_embedding(self, factor: float) -> None:
        """Shrink the random value table so it does not drown a data-derived gene table."""
        table = self.value_projection.weight if self.scheme == "value" else self.value.weight
        with torch.no_grad():
            table.mul_(factor)

    def forward(self, tokens: Tokens) -> torch.Tensor:
        masked = tokens.value_masked
        if self.scheme == "rank":
            gene_ids = tokens.gene_ids.masked_fill(masked, self.n_genes + 2)
            return self.gene(gene_ids) + self.value(tokens.value_ids)
        gene_part = self.gene(tokens.gene_ids)
        if self.scheme == "value":
            dtype = gene_part.dtype
            projected = self.value_projection(tokens.values.to(dtype).unsqueeze(-1))
            projected = projected * tokens.gene_token_mask.unsqueeze(-1).to(dtype)
            return gene_part + torch.where(masked.unsqueeze(-1), self.value_mask.to(dtype), projected)
        return gene_part + self.value(tokens.value_ids.masked_fill(masked, self.n_value_ids))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key-padding mask through ``F.scaled_dot_product_attention``."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor):
        batch, length, d_model = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, d_model // self.n_heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (batch, heads, length, d_head)

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(batch, length, -1))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        # no dropout on the attention probabilities: on CPU it forces SDPA's unfused path (~10x
        # slower); the block still applies dropout to the attention output
        # without padding, SDPA runs its fused kernel with no mask at all
        keep = ~padding_mask[:, None, None, :] if padding_mask.any() else None
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=keep))

    def attention_probabilities(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Explicit ``(batch, heads, length, length)`` softmax attention (SDPA does not return it)."""
        q, k, _ = self._heads(x)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        return torch.softmax(scores.masked_fill(padding_mask[:, None, None, :], float("-inf")), dim=-1)


class PerformerAttention(SelfAttention):
    """FAVOR+ linear attention (positive orthogonal random features); padded keys get zero features."""

    def __init__(self, d_model: int, n_heads: int, n_features: int = 64):
        super().__init__(d_model, n_heads)
        d_head = d_model // n_heads
        self.register_buffer("projection", _orthogonal_gaussian(n_features, d_head))

    def _features(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        x = x * x.shape[-1] ** -0.25
        projected = x @ self.projection.to(x.dtype).T
        log_features = projected - (x**2).sum(-1, keepdim=True) / 2
        if valid is None:  # queries: a per-query constant cancels in the normalisation
            stabiliser = log_features.amax(-1, keepdim=True)
        else:  # keys: one constant per (cell, head), taken over the real keys only
            stabiliser = log_features.masked_fill(~valid[..., None], float("-inf")).amax(
                (-2, -1), keepdim=True
            )
        features = torch.exp(log_features - stabiliser.detach()) / math.sqrt(self.projection.shape[0])
        return features if valid is None else features * valid[..., None].to(features.dtype)

    def _kernel(self, x, padding_mask):
        q, k, v = self._heads(x)
        valid = ~padding_mask[:, None, :].expand(-1, self.n_heads, -1)
        return self._features(q, None), self._features(k, valid), v

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        phi_q, phi_k, v = self._kernel(x, padding_mask)
        key_value = phi_k.transpose(-1, -2) @ v  # (batch, heads, features, d_head)
        normaliser = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # (batch, heads, length, 1)
        out = (phi_q @ key_value) / normaliser.clamp_min(torch.finfo(phi_q.dtype).tiny)
        return self._merge(out)

    def attention_probabilities(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        phi_q, phi_k, _ = self._kernel(x, padding_mask)
        weights = phi_q @ phi_k.transpose(-1, -2)
        return weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


def _orthogonal_gaussian(n_rows: int, n_cols: int) -> torch.Tensor:
    """Blocks of orthogonal rows with chi-distributed norms, as in FAVOR+."""
    blocks = []
    for _ in range(math.ceil(n_rows / n_cols)):
        q, _ = torch.linalg.qr(torch.randn(n_cols, n_cols))
        blocks.append(q.T)
    norms = torch.randn(n_rows, n_cols).norm(dim=1, keepdim=True)
    return torch.cat(blocks)[:n_rows] * norms


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, attention: str, n_features: int):
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        if attention == "performer":
            self.attention = PerformerAttention(d_model, n_heads, n_features)
        elif attention == "sdpa":
            self.attention = SelfAttention(d_model, n_heads)
        else:
            raise ValueError(f"attention must be 'sdpa' or 'performer', got {attention!r}.")
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        # dropout on the embeddings and on both residual branches (GPT-2 style); none on the
        # 4x-wide MLP hidden layer, where CPU dropout sampling costs more than the matmuls
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm_attention(x), padding_mask))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class Encoder(nn.Module):
    """Token embedding, dropout, ``n_layers`` pre-LN blocks and a final LayerNorm."""

    def __init__(
        self, embedding: TokenEmbedding, *, d_model, n_heads, n_layers, dropout, attention, n_features
    ):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, dropout, attention, n_features) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: Tokens) -> torch.Tensor:
        x = self.dropout(self.embedding(tokens).to(self.norm.weight.dtype))
        for block in self.blocks:
            x = block(x, tokens.padding_mask)
        return self.norm(x)

    def attention_probabilities(self, tokens: Tokens, layer: int = -1) -> torch.Tensor:
        """Head-averaged attention ``(cells, length, length)`` of block ``layer`` (eval mode)."""
        layer = range(len(self.blocks))[layer]
        x = self.embedding(tokens).to(self.norm.weight.dtype)
        for block in self.blocks[:layer]:
            x = block(x, tokens.padding_mask)
        block = self.blocks[layer]
        return block.attention.attention_probabilities(block.norm_attention(x), tokens.padding_mask).mean(1)
