"""The torch module of :class:`~cellrep.model.CellEncoder` (a scvi-tools ``BaseModuleClass``)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from ._augment import binomial_thin, mask_tokens, repack, subsample_genes
from ._nn import Encoder, TokenEmbedding
from ._tokenize import Tokens, n_value_ids, tokenize


@dataclasses.dataclass(frozen=True)
class Objectives:
    """Weights and augmentation settings of the pretraining objectives.

    ``variance_weight`` scales a VICReg-style collapse guard on the contrastive projections
    (hinge on every dimension's standard deviation below 1, plus squared off-diagonal
    covariances); ``thinning`` is the lowest fraction of the counts a view keeps
    (:func:`~cellrep.model._augment.binomial_thin`; 1 disables it).
    """

    mlm_weight: float = 1.0
    contrastive_weight: float = 1.0
    supervised_weight: float = 0.0
    temperature: float = 0.1
    mask_ratio: float = 0.15
    subsample_rate: float = 0.3
    variance_weight: float = 0.0
    thinning: float = 1.0

    @property
    def n_views(self) -> int:
        return 2 if self.contrastive_weight > 0 else 1


def variance_covariance(*views: torch.Tensor) -> torch.Tensor:
    """VICReg's variance and covariance terms (Bardes et al. 2022), summed over the views."""
    total = views[0].new_zeros(())
    for z in views:
        centred = z - z.mean(0)
        n_cells, n_dims = z.shape
        variance = centred.pow(2).sum(0) / max(n_cells - 1, 1)
        total = total + F.relu(1 - torch.sqrt(variance + 1e-4)).mean()
        covariance = centred.T @ centred / max(n_cells - 1, 1)
        off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
        total = total + off_diagonal.pow(2).sum() / n_dims
    return total


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (InfoNCE over both views): view ``i`` of a cell is the positive of the other view."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, positives)


def nt_xent_with_gradient(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, block_size: int = 256, *, gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`nt_xent` and its gradient w.r.t. ``z1`` and ``z2``, computed in row blocks.

    The similarity matrix is never materialised: memory is O(``block_size`` × 2n) instead of
    O(4n²), so the full-batch loss of the divide-and-conquer step stays flat in the batch size.
    With ``g = softmax(s_i) - onehot(positive_i)``, ``s_ij = z_i·z_j / T`` gives
    ``dL/dz_i += g_i z / T`` and ``dL/dz_j += g_ij z_i / T`` (normalisation by autograd).
    """
    raw = torch.cat([z1, z2]).detach().requires_grad_(gradient)
    with torch.set_grad_enabled(gradient):
        normalized = F.normalize(raw, dim=1)
    z = normalized.detach()
    n_rows, n_cells = z.shape[0], z1.shape[0]
    loss, z_gradient = z.new_zeros(()), torch.zeros_like(z)
    for start in range(0, n_rows, block_size):
        rows = torch.arange(start, min(start + block_size, n_rows), device=z.device)
        local = torch.arange(rows.numel(), device=z.device)
        positives = (rows + n_cells) % n_rows
        similarity = z[rows] @ z.T / temperature
        similarity[local, rows] = float("-inf")
        log_probabilities = torch.log_softmax(similarity, dim=1)
        loss = loss - log_probabilities[local, positives].sum()
        if gradient:
            weights = log_probabilities.exp()
            weights[local, positives] -= 1
            z_gradient[rows] += weights @ z / temperature
            z_gradient += weights.T @ z[rows] / temperature
    if not gradient:
        return loss / n_rows, None, None
    (raw_gradient,) = torch.autograd.grad(normalized, raw, z_gradient / n_rows)
    return loss / n_rows, raw_gradient[:n_cells], raw_gradient[n_cells:]


def pool(hidden: torch.Tensor, tokens: Tokens, pooling: str) -> torch.Tensor:
    """Cell embedding: the CLS state, or the mean of the gene-token states."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}.")
    weights = tokens.gene_token_mask.to(hidden.dtype)
    n_tokens = weights.sum(1, keepdim=True)
    mean = (hidden * weights.unsqueeze(-1)).sum(1) / n_tokens.clamp_min(1)
    return torch.where(n_tokens > 0, mean, hidden[:, 0])


class CellEncoderModule(BaseModuleClass):
    """Transformer cell encoder with MLM, contrastive (on a projection head) and supervised heads.

    Parameters
    ----------
    n_input
        Number of genes in the vocabulary.
    n_labels
        Number of cell-type labels (the supervised head exists when ``supervised``).
    pooling
        Cell embedding: ``'mean'`` of the gene-token states or the ``'cls'`` state; the
        projection head (contrastive) and the label head read it.
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int = 1,
        *,
        n_layers: int = 2,
        d_model: int = 64,
        n_heads: int = 4,
        dropout: float = 0.1,
        max_seq_len: int = 64,
        tokenization: str = "equal_bins",
        n_bins: int = 10,
        attention: str = "sdpa",
        n_random_features: int = 64,
        supervised: bool = False,
        pooling: str = "mean",
        length_buckets: bool = False,
    ):
        super().__init__()
        self.length_buckets = length_buckets
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}.")
        self.n_genes = n_input
        self.max_seq_len = max_seq_len
        self.tokenization = tokenization
        self.n_bins = n_bins
        self.pooling = pooling
        n_values = n_value_ids(tokenization, n_bins, max_seq_len)
        self.register_buffer("gene_scale", torch.ones(n_input))
        self.register_buffer("token_genes", torch.ones(n_input, dtype=torch.bool))
        self.register_buffer("class_weights", torch.ones(n_labels))
        embedding = TokenEmbedding(n_input, d_model, tokenization, n_values)
        self.encoder = Encoder(
            embedding,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            dropout=dropout,
            attention=attention,
            n_features=n_random_features,
        )
        n_outputs = {"value": 1, "rank": n_input}.get(tokenization, n_values)
        self.mlm_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model), nn.Linear(d_model, n_outputs)
        )
        # SimCLR: the contrastive loss acts on a projection of the embedding, not on the embedding
        self.projection_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.label_head = nn.Linear(d_model, n_labels) if supervised else None

    # --- tokens and encoder -------------------------------------------------------------
    def tokenize(self, x: torch.Tensor) -> Tokens:
        return tokenize(
            x,
            n_genes=self.n_genes,
            max_seq_len=self.max_seq_len,
            scheme=self.tokenization,
            n_bins=self.n_bins,
            gene_scale=self.gene_scale,
            gene_mask=None if bool(self.token_genes.all()) else self.token_genes,
        )

    def encode(self, tokens: Tokens) -> torch.Tensor:
        """Hidden states ``(cells, length, d_model)``; bf16 autocast (flash/efficient SDPA) on CUDA.

        With ``length_buckets`` the cells are encoded in groups of equal length, each cut to
        that length, so attention never sees a padding mask (PyTorch's flash kernel takes
        none); the states are put back in place (padding positions stay 0).
        """
        if self.length_buckets and bool(tokens.padding_mask.any()):
            return self._encode_by_length(tokens)
        return self._encode(tokens)

    def _encode_by_length(self, tokens: Tokens) -> torch.Tensor:
        """Tokens must sit at the front of each row (as :func:`tokenize` and ``repack`` leave them)."""
        lengths = (~tokens.padding_mask).sum(1)
        hidden = None
        for length in torch.unique(lengths).tolist():
            rows = torch.nonzero(lengths == length).squeeze(1)
            part = Tokens(
                *(field[rows, :length] for field in (tokens.gene_ids, tokens.value_ids, tokens.values)),
                tokens.padding_mask[rows, :length],
                tokens.value_masked[rows, :length],
            )
            states = self._encode(part)
            if hidden is None:
                hidden = states.new_zeros((*tokens.gene_ids.shape, states.shape[-1]))
            hidden = hidden.index_put(
                (rows[:, None], torch.arange(length, device=rows.device)[None, :]), states
            )
        return hidden

    def _encode(self, tokens: Tokens) -> torch.Tensor:
        if tokens.gene_ids.is_cuda and torch.cuda.is_bf16_supported():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.encoder(tokens).float()
        return self.encoder(tokens)

    @torch.inference_mode()
    @auto_move_data
    def embed(self, x: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Deterministic cell embedding of a count batch (no augmentation)."""
        tokens = self.tokenize(x)
        return pool(self.encode(tokens), tokens, pooling or self.pooling)

    @torch.inference_mode()
    @auto_move_data
    def label_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax of the label head on the deterministic embedding (needs ``supervised``)."""
        return torch.softmax(self.label_head(self.embed(x)), dim=1)

    def augmented_views(self, x: torch.Tensor, objectives: Objectives) -> list[Tokens]:
        """``objectives.n_views`` views: thinned counts, subsampled genes (repacked), MLM masks."""
        contrastive = objectives.n_views > 1
        subsample_rate = objectives.subsample_rate if contrastive else 0.0
        mask_ratio = objectives.mask_ratio if objectives.mlm_weight > 0 else 0.0
        thinning = objectives.thinning if contrastive else 1.0
        shared = self.tokenize(x) if thinning >= 1 else None
        views = []
        for _ in range(objectives.n_views):
            tokens = shared if shared is not None else self.tokenize(binomial_thin(x, thinning))
            view = repack(subsample_genes(tokens, subsample_rate)) if subsample_rate > 0 else tokens
            views.append(mask_tokens(view, mask_ratio))
        return views

    # --- scvi-tools interface ------------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {key: inference_outputs[key] for key in ("views", "hidden", "embeddings")}

    @auto_move_data
    def inference(self, x: torch.Tensor, objectives: Objectives = Objectives()) -> dict:
        """Draw ``objectives.n_views`` augmented views, encode and pool them."""
        views = self.augmented_views(x, objectives)
        hidden = [self.encode(view) for view in views]
        return {
            "views": views,
            "hidden": hidden,
            "embeddings": [pool(h, v, self.pooling) for h, v in zip(hidden, views, strict=True)],
        }

    def generative(
        self,
        views: list[Tokens],
        hidden: list[torch.Tensor],
        embeddings: list[torch.Tensor],
        heads: bool = True,
    ) -> dict:
        """Projections of each view; with ``heads``, MLM predictions (masked positions) and label logits."""
        outputs = {"projections": [self.projection_head(z) for z in embeddings]}
        if heads:
            outputs["mlm_predictions"] = [
                self.mlm_head(h[v.value_masked]) for v, h in zip(views, hidden, strict=True)
            ]
            if self.label_head is not None:
                outputs["label_logits"] = [self.label_head(z) for z in embeddings]
        return outputs

    def loss_terms(self, tensors, inference_outputs, generative_outputs, objectives: Objectives) -> dict:
        """Per-minibatch sums (and their normalisers) of the local, per-cell objectives.

        Without head outputs (the no-grad pass of the chunked step) only the normalisers are
        computed: the sums come from the replay.
        """
        views = inference_outputs["views"]
        terms = {"embeddings": generative_outputs["projections"], "mlm_sum": 0.0, "mlm_count": 0}
        terms["mlm_count"] = sum(int(view.value_masked.sum()) for view in views)
        for view, prediction in zip(views, generative_outputs.get("mlm_predictions", []), strict=False):
            masked = view.value_masked
            if self.tokenization == "value":
                loss = F.mse_loss(prediction[:, 0], view.values[masked].to(prediction.dtype), reduction="sum")
            else:
                target = view.gene_ids if self.tokenization == "rank" else view.value_ids
                loss = F.cross_entropy(prediction, target[masked], reduction="sum")
            terms["mlm_sum"] = terms["mlm_sum"] + loss
        terms["supervised_sum"], terms["supervised_count"] = 0.0, 0.0
        if self.label_head is not None and objectives.supervised_weight > 0:
            labels = tensors[REGISTRY_KEYS.LABELS_KEY].view(-1).long()
            weights = self.class_weights.to(inference_outputs["embeddings"][0].dtype)
            terms["supervised_count"] = float(weights[labels].sum()) * len(views)
            for logits in generative_outputs.get("label_logits", []):
                terms["supervised_sum"] = terms["supervised_sum"] + F.cross_entropy(
                    logits, labels, weight=weights, reduction="sum"
                )
        return terms

    def local_terms(
        self, tensors: dict[str, torch.Tensor], objectives: Objectives, heads: bool = True
    ) -> dict:
        """Encode one chunk: its view projections and its MLM / supervised loss sums."""
        inference_outputs = self.inference(**self._get_inference_input(tensors), objectives=objectives)
        generative_outputs = self.generative(
            **self._get_generative_input(tensors, inference_outputs), heads=heads
        )
        return self.loss_terms(tensors, inference_outputs, generative_outputs, objectives)

    def loss(
        self, tensors, inference_outputs, generative_outputs, objectives: Objectives = Objectives()
    ) -> LossOutput:
        """Weighted sum of the objectives on one (non-chunked) minibatch."""
        terms = self.loss_terms(tensors, inference_outputs, generative_outputs, objectives)
        return combine_objectives(terms["embeddings"], terms, objectives)


def combine_objectives(embeddings: list[torch.Tensor], terms: dict, objectives: Objectives) -> LossOutput:
    """Full-batch loss from the gathered view projections and the summed local terms."""
    zero = embeddings[0].sum() * 0
    contrastive = nt_xent(*embeddings, objectives.temperature) if objectives.n_views == 2 else zero
    collapse = variance_covariance(*embeddings) if objectives.variance_weight > 0 else zero
    mlm = terms["mlm_sum"] / max(terms["mlm_count"], 1) if terms["mlm_count"] else zero
    supervised = terms["supervised_sum"] / terms["supervised_count"] if terms["supervised_count"] else zero
    total = (
        objectives.contrastive_weight * contrastive
        + objectives.variance_weight * collapse
        + objectives.mlm_weight * mlm
        + objectives.supervised_weight * supervised
    )
    return LossOutput(
        loss=total,
        n_obs_minibatch=embeddings[0].shape[0],
        extra_metrics={
            "mlm_loss": mlm.detach(),
            "contrastive_loss": contrastive.detach(),
            "supervised_loss": supervised.detach(),
        },
    )
