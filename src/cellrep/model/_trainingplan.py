"""Divide-and-conquer (GradCache) training plan with manual optimization.

A contrastive loss couples all cells of a batch, so its memory would grow with the batch.
Following CellLM's divide-and-conquer scheme (GradCache, Gao et al. 2021), one step is:

1. encode every chunk without a graph (keeping only the cell embeddings) and save the RNG
   state before each chunk;
2. compute the full-batch contrastive loss on the gathered embeddings and its gradient with
   respect to them;
3. re-encode each chunk with a graph after restoring its RNG state (identical dropout and
   augmentation) and backpropagate ``sum(embeddings * cached_gradient)`` plus the chunk's
   share of the MLM and supervised losses.

Peak memory is that of one chunk plus the ``batch × d_model`` embeddings, and the gradient is
exactly the full-batch gradient because cells are encoded independently (no BatchNorm).
The replay costs a second forward pass, so it only runs when the whole batch would not fit
in memory (``chunk_size='auto'``, see :func:`activation_bytes`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from scvi.train import TrainingPlan

from ._distributed import distributed, gather_detached, gather_with_grad, global_sum
from ._module import Objectives, nt_xent, nt_xent_with_gradient, variance_covariance

LOSS_NAMES = ("loss", "mlm_loss", "contrastive_loss", "supervised_loss")
DEFAULT_MEMORY_BYTES = 2**30
# float32 activations a pre-LN block keeps per token for the backward pass, in units of d_model
# (q, k, v, attention output, two LayerNorms, the 4x MLP before and after GELU, residuals, dropout)
ACTIVATIONS_PER_TOKEN = 24


def activation_bytes(n_cells: int, module, n_views: int) -> int:
    """Rough memory of one autograd pass over ``n_cells`` full-length cells and ``n_views`` views."""
    tokens = n_cells * (module.max_seq_len + 1) * n_views
    d_model = module.encoder.norm.normalized_shape[0]
    return tokens * d_model * len(module.encoder.blocks) * ACTIVATIONS_PER_TOKEN * 4


def learning_rate_factor(progress: float, warmup_fraction: float) -> float:
    """Linear warm-up over the first ``warmup_fraction`` of training, then cosine decay to 0 at its end."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return progress / warmup_fraction
    decay = (progress - warmup_fraction) / (1 - warmup_fraction) if warmup_fraction < 1 else 1.0
    return 0.5 * (1 + math.cos(math.pi * decay))


def slice_rows(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a dense or sparse CSR tensor."""
    if x.layout != torch.sparse_csr:
        if x.layout != torch.strided:
            x = x.to_sparse_csr()
        else:
            return x[start:stop]
    crow = x.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(
        crow[start : stop + 1] - first,
        x.col_indices()[first:last],
        x.values()[first:last],
        size=(stop - start, x.shape[1]),
    )


def split_batch(batch: dict[str, torch.Tensor], chunk_size: int | None) -> list[dict[str, torch.Tensor]]:
    n_cells = batch["X"].shape[0]
    chunk_size = chunk_size or n_cells
    return [
        {key: slice_rows(value, start, min(start + chunk_size, n_cells)) for key, value in batch.items()}
        for start in range(0, n_cells, chunk_size)
    ]


def capture_rng(device: torch.device) -> dict:
    """RNG states that dropout and the augmentations draw from (CPU, and CUDA when used)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class CellEncoderTrainingPlan(TrainingPlan):
    """Training plan of :class:`~cellrep.model.CellEncoder`.

    Parameters
    ----------
    module
        A :class:`~cellrep.model._module.CellEncoderModule`.
    chunk_size
        Cells encoded at once; the gradient is that of the whole batch whatever the chunk.
        ``None`` runs the plain full-batch step (memory grows with the batch); ``'auto'`` does
        so when :func:`activation_bytes` of the batch fits ``memory_bytes``, else chunks of 64.
    lr, weight_decay, optimizer
        AdamW by default.
    warmup_fraction
        Linear learning-rate warm-up over this fraction of training, then a cosine decay to
        ``lr_min`` at the real end of training: the last step, or the end of ``time_budget``
        seconds when that comes first (progress is the larger of the two fractions).
    time_budget
        Wall-clock seconds the training may run (``CellEncoder.train(max_time=...)`` sets it).
    gradient_clip_val
        Maximum gradient norm (``None`` disables clipping).
    mlm_weight, contrastive_weight, supervised_weight, temperature, mask_ratio, subsample_rate,
    variance_weight, thinning
        See :class:`~cellrep.model._module.Objectives`.
    """

    def __init__(
        self,
        module,
        *,
        chunk_size: int | str | None = "auto",
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        optimizer: str = "AdamW",
        warmup_fraction: float = 0.1,
        time_budget: float | None = None,
        lr_min: float = 0.0,
        gradient_clip_val: float | None = 1.0,
        mlm_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        supervised_weight: float = 0.0,
        temperature: float = 0.1,
        mask_ratio: float = 0.15,
        subsample_rate: float = 0.5,
        variance_weight: float = 1.0,
        thinning: float = 0.5,
        **kwargs,
    ):
        super().__init__(
            module, lr=lr, weight_decay=weight_decay, optimizer=optimizer, eps=1e-8, lr_min=lr_min, **kwargs
        )
        self.automatic_optimization = False
        if not (
            chunk_size is None or chunk_size == "auto" or (isinstance(chunk_size, int) and chunk_size > 0)
        ):
            raise ValueError(f"chunk_size must be a positive int, 'auto' or None, got {chunk_size!r}.")
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}.")
        self.chunk_size = chunk_size
        self.memory_bytes = memory_bytes
        self.warmup_fraction = warmup_fraction
        self.time_budget = time_budget
        self.gradient_clip_val = gradient_clip_val
        self.clock = time.monotonic
        self._start_time: float | None = None
        self.objectives = Objectives(
            mlm_weight,
            contrastive_weight,
            supervised_weight,
            temperature,
            mask_ratio,
            subsample_rate,
            variance_weight,
            thinning,
        )

    def effective_chunk_size(self, n_cells: int) -> int | None:
        """``None`` (one pass with a graph) when the batch fits ``memory_bytes``, else the chunk."""
        if self.chunk_size != "auto":
            return self.chunk_size
        if activation_bytes(n_cells, self.module, self.objectives.n_views) <= self.memory_bytes:
            return None
        return 64

    # --- the divide-and-conquer step ------------------------------------------------------
    def _encode_chunks(self, chunks) -> tuple[list[torch.Tensor], dict, list[dict]]:
        """Step 1: encode every chunk without a graph; remember the RNG state before each."""
        device = chunks[0]["X"].device
        rng_states, embeddings, totals = (
            [],
            [],
            {"mlm_sum": 0.0, "mlm_count": 0, "supervised_sum": 0.0, "supervised_count": 0.0},
        )
        with torch.no_grad():
            for chunk in chunks:
                rng_states.append(capture_rng(device))
                terms = self.module.local_terms(chunk, self.objectives, heads=False)
                embeddings.append(terms["embeddings"])
                for key in totals:
                    totals[key] += float(terms[key])
        views = [torch.cat(view) for view in zip(*embeddings, strict=True)]
        totals = {key: global_sum(value, device) for key, value in totals.items()}
        return views, totals, rng_states

    def _losses(
        self, views: list[torch.Tensor], totals: dict, contrastive: bool = True
    ) -> dict[str, torch.Tensor]:
        """The objectives; ``contrastive=False`` leaves the contrastive term at 0 (added by the caller)."""
        objectives = self.objectives
        zero = views[0].new_zeros(())
        gathered = [gather_with_grad(z) for z in views] if len(views) == 2 and contrastive else None
        contrastive = nt_xent(*gathered, objectives.temperature) if gathered else zero
        collapse = variance_covariance(*gathered) if gathered and objectives.variance_weight > 0 else zero
        mlm = totals["mlm_sum"] / totals["mlm_count"] if totals["mlm_count"] else 0.0
        supervised = (
            totals["supervised_sum"] / totals["supervised_count"] if totals["supervised_count"] else 0.0
        )
        total = (
            objectives.contrastive_weight * contrastive
            + objectives.variance_weight * collapse
            + objectives.mlm_weight * mlm
            + objectives.supervised_weight * supervised
        )
        as_tensor = lambda value: torch.as_tensor(value, dtype=zero.dtype, device=zero.device)  # noqa: E731
        return {
            "loss": total,
            "mlm_loss": as_tensor(mlm),
            "contrastive_loss": contrastive,
            "supervised_loss": as_tensor(supervised),
        }

    def _blockwise_losses(self, views: list[torch.Tensor], totals: dict, gradient: bool):
        """Losses with a memory-flat contrastive term, and its weighted gradient per view."""
        losses = self._losses(views, totals, contrastive=False)
        if len(views) < 2:
            return losses, None
        # every rank computes the global loss (and gradient) and keeps its own rows
        gathered, own_rows = zip(*(gather_detached(z) for z in views), strict=True)
        contrastive, *gradients = nt_xent_with_gradient(
            *gathered, self.objectives.temperature, gradient=gradient
        )
        weight = self.objectives.contrastive_weight
        losses["contrastive_loss"] = contrastive
        losses["loss"] = losses["loss"] + weight * contrastive
        if self.objectives.variance_weight > 0:
            leaves = [z.detach().requires_grad_(gradient) for z in gathered]
            with torch.set_grad_enabled(gradient):
                collapse = self.objectives.variance_weight * variance_covariance(*leaves)
            losses["loss"] = losses["loss"] + collapse.detach()
            if gradient:
                extra = torch.autograd.grad(collapse, leaves)
                gradients = [weight * g + e for g, e in zip(gradients, extra, strict=True)]
                weight = 1.0
        if not gradient:
            return losses, None
        return losses, [weight * g[rows] for g, rows in zip(gradients, own_rows, strict=True)]

    def _full_batch_gradients(self, batch, backward) -> dict:
        """One pass with a graph; under DDP the per-cell terms are this rank's share of the global mean."""
        terms = self.module.local_terms(batch, self.objectives)
        device = batch["X"].device
        totals = {key: terms[key] for key in ("mlm_sum", "supervised_sum")}
        totals |= {key: global_sum(terms[key], device) for key in ("mlm_count", "supervised_count")}
        losses = self._losses(terms["embeddings"], totals)
        if not distributed():
            backward(losses["loss"])
            return {key: torch.as_tensor(value).detach() for key, value in losses.items()}
        # DDP averages the ranks' gradients: all_gather's backward already sums the contrastive
        # gradient over ranks, the local shares are scaled up to match
        objectives = self.objectives
        local = (
            objectives.mlm_weight * losses["mlm_loss"]
            + objectives.supervised_weight * losses["supervised_loss"]
        )
        backward(losses["loss"] + (dist.get_world_size() - 1) * local)
        shares = {key: global_sum(losses[key].detach(), device) for key in ("mlm_loss", "supervised_loss")}
        global_local = (
            objectives.mlm_weight * shares["mlm_loss"]
            + objectives.supervised_weight * shares["supervised_loss"]
        )
        losses = {key: torch.as_tensor(value).detach() for key, value in losses.items()}
        losses["loss"] = losses["loss"] - local.detach() + global_local
        losses["mlm_loss"], losses["supervised_loss"] = (torch.as_tensor(shares[k]) for k in shares)
        return losses

    def compute_gradients(
        self, batch: dict[str, torch.Tensor], backward: Callable[[torch.Tensor], None]
    ) -> dict:
        """Accumulate the full-batch gradient into ``.grad``; return the detached losses."""
        chunk_size = self.effective_chunk_size(batch["X"].shape[0])
        if chunk_size is None:
            return self._full_batch_gradients(batch, backward)

        chunks = split_batch(batch, chunk_size)
        device = batch["X"].device
        views, totals, rng_states = self._encode_chunks(chunks)
        losses, gradients = self._blockwise_losses(views, totals, gradient=True)
        rng_after = capture_rng(device)
        start = 0
        objectives = self.objectives
        # the no-grad pass skips the heads: their loss sums come from the replay
        replayed = {"mlm_sum": 0.0, "supervised_sum": 0.0}
        for chunk, rng_state in zip(chunks, rng_states, strict=True):
            restore_rng(rng_state, device)
            terms = self.module.local_terms(chunk, objectives)
            n_cells = chunk["X"].shape[0]
            surrogate = views[0].new_zeros(())
            if len(views) == 2:
                for z, gradient in zip(terms["embeddings"], gradients, strict=True):
                    surrogate = surrogate + (z * gradient[start : start + n_cells]).sum()
            if totals["mlm_count"] and objectives.mlm_weight > 0:
                surrogate = surrogate + objectives.mlm_weight * terms["mlm_sum"] / totals["mlm_count"]
            if totals["supervised_count"] and objectives.supervised_weight > 0:
                surrogate = (
                    surrogate
                    + objectives.supervised_weight * terms["supervised_sum"] / totals["supervised_count"]
                )
            for key in replayed:
                replayed[key] += float(torch.as_tensor(terms[key]).detach())
            if surrogate.requires_grad:
                # DDP averages gradients over ranks; each rank's share is of the global loss
                backward(surrogate * (dist.get_world_size() if distributed() else 1))
            start += n_cells
        restore_rng(rng_after, device)
        local = self._losses(
            views, {**totals, **{k: global_sum(v, device) for k, v in replayed.items()}}, False
        )
        losses["loss"] = losses["loss"] + local["loss"]
        losses["mlm_loss"], losses["supervised_loss"] = local["mlm_loss"], local["supervised_loss"]
        return {key: torch.as_tensor(value).detach() for key, value in losses.items()}

    # --- Lightning hooks ------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of training done: by steps, or by the time budget when that runs out first."""
        step_fraction = 0.0
        if self._trainer is not None:
            total = self.trainer.estimated_stepping_batches
            if math.isfinite(total) and total > 0:
                step_fraction = self.global_step / total
        time_fraction = 0.0
        if self.time_budget and self._start_time is not None:
            time_fraction = (self.clock() - self._start_time) / self.time_budget
        return max(step_fraction, time_fraction)

    def _learning_rate(self) -> float:
        factor = learning_rate_factor(self.progress(), self.warmup_fraction)
        if self.global_step == 0 and factor == 0:  # warm-up starts with a small step, not none
            factor = learning_rate_factor(1 / max(self._total_steps(), 1), self.warmup_fraction)
        return self.lr_min + (self.lr - self.lr_min) * factor

    def _total_steps(self) -> float:
        if self._trainer is None:
            return 1
        total = self.trainer.estimated_stepping_batches
        return total if math.isfinite(total) else 1000

    def on_train_start(self) -> None:
        self._start_time = self.clock()

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        learning_rate = self._learning_rate()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        optimizer.zero_grad()
        losses = self.compute_gradients(batch, self.manual_backward)
        if self.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.gradient_clip_val)
        optimizer.step()
        self._log_losses(losses, "train", batch["X"].shape[0])
        self.log("lr", learning_rate, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist)

    def validation_step(self, batch, batch_idx):
        chunk_size = self.effective_chunk_size(batch["X"].shape[0])
        with torch.no_grad():
            parts = [
                self.module.local_terms(chunk, self.objectives) for chunk in split_batch(batch, chunk_size)
            ]
        keys = ("mlm_sum", "mlm_count", "supervised_sum", "supervised_count")
        totals = {key: global_sum(sum(float(part[key]) for part in parts), batch["X"].device) for key in keys}
        views = [torch.cat(view) for view in zip(*(part["embeddings"] for part in parts), strict=True)]
        losses, _ = self._blockwise_losses(views, totals, gradient=False)
        self._log_losses(losses, "validation", batch["X"].shape[0])

    def _log_losses(self, losses: dict, mode: str, n_cells: int) -> None:
        for name in LOSS_NAMES:
            key = f"{mode}_loss" if name == "loss" else f"{name}_{mode}"
            self.log(
                key,
                losses[name],
                on_step=False,
                on_epoch=True,
                batch_size=n_cells,
                prog_bar=name == "loss",
                sync_dist=self.use_sync_dist,
            )

    def configure_optimizers(self):
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        return self.get_optimizer_creator()(parameters)
