"""Acceptance: the divide-and-conquer gradient equals the full-batch gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import synthetic_counts
from tests.model.model_fixtures import single_torch_thread  # noqa: F401

from cellrep.model._module import CellEncoderModule, nt_xent, nt_xent_with_gradient
from cellrep.model._trainingplan import CellEncoderTrainingPlan, split_batch

N_CELLS, CHUNK, N_LABELS = 64, 8, 3


def make_batch(sparse_x: bool) -> dict[str, torch.Tensor]:
    counts = torch.as_tensor(synthetic_counts(N_CELLS, 40, seed=3), dtype=torch.float32)
    labels = torch.as_tensor(np.arange(N_CELLS) % N_LABELS, dtype=torch.float32)[:, None]
    return {"X": counts.to_sparse_csr() if sparse_x else counts, "labels": labels}


def make_plan(tokenization: str, dropout: float, chunk_size, **objectives) -> CellEncoderTrainingPlan:
    torch.manual_seed(0)
    module = CellEncoderModule(
        40,
        N_LABELS,
        n_layers=2,
        d_model=16,
        n_heads=2,
        dropout=dropout,
        max_seq_len=12,
        tokenization=tokenization,
        n_bins=6,
        supervised=True,
    ).double()
    module.train()
    return CellEncoderTrainingPlan(module, chunk_size=chunk_size, **objectives)


def gradients(module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return grads


def reference_gradients(plan, batch, seed) -> dict[str, torch.Tensor]:
    """Full-batch loss in one autograd graph, the chunks drawing the same random numbers."""
    torch.manual_seed(seed)
    terms = [plan.module.local_terms(chunk, plan.objectives) for chunk in split_batch(batch, CHUNK)]
    views = [torch.cat(view) for view in zip(*(t["embeddings"] for t in terms), strict=True)]
    totals = {
        key: sum(t[key] for t in terms)
        for key in ("mlm_sum", "mlm_count", "supervised_sum", "supervised_count")
    }
    plan._losses(views, totals)["loss"].backward()
    return gradients(plan.module)


def assert_same_gradients(actual, expected):
    assert actual.keys() == expected.keys()
    assert len(expected) > 10
    for name, reference in expected.items():
        relative = (actual[name] - reference).norm() / reference.norm().clamp_min(1e-300)
        assert relative < 1e-5, name
        torch.testing.assert_close(actual[name], reference, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("tokenization", ["equal_bins", "value", "rank"])
@pytest.mark.parametrize("sparse_x", [False, True])
def test_divide_and_conquer_gradient_is_exact_with_dropout_and_augmentation(tokenization, sparse_x):
    batch = make_batch(sparse_x)
    plan = make_plan(tokenization, 0.2, CHUNK, supervised_weight=0.5, subsample_rate=0.3, mask_ratio=0.3)
    torch.manual_seed(11)
    losses = plan.compute_gradients(batch, torch.Tensor.backward)
    chunked = gradients(plan.module)
    assert all(torch.isfinite(value) for value in losses.values())
    assert_same_gradients(chunked, reference_gradients(plan, batch, 11))


def test_divide_and_conquer_matches_single_forward_when_deterministic():
    # no dropout and no random augmentation: chunking must not change anything
    batch = make_batch(False)
    plan = make_plan(
        "equal_bins", 0.0, CHUNK, mlm_weight=0.0, supervised_weight=1.0, subsample_rate=0.0, thinning=1.0
    )
    plan.compute_gradients(batch, torch.Tensor.backward)
    chunked = gradients(plan.module)
    plan.chunk_size = None
    plan.compute_gradients(batch, torch.Tensor.backward)
    assert_same_gradients(chunked, gradients(plan.module))


def test_rng_stream_continues_after_the_step():
    # the replay restores the RNG, so the step consumes the same random numbers as one pass
    batch = make_batch(False)
    plan = make_plan("equal_bins", 0.1, CHUNK)
    torch.manual_seed(5)
    plan.compute_gradients(batch, torch.Tensor.backward)
    after_step = torch.rand(3)
    torch.manual_seed(5)
    with torch.no_grad():
        plan._encode_chunks(split_batch(batch, CHUNK))
    torch.testing.assert_close(after_step, torch.rand(3))


@pytest.mark.parametrize("block_size", [5, 16, 256])
def test_blockwise_nt_xent_matches_autograd(block_size):
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    loss, grad1, grad2 = nt_xent_with_gradient(z1, z2, 0.3, block_size)
    leaves = [z1.clone().requires_grad_(), z2.clone().requires_grad_()]
    reference = nt_xent(*leaves, 0.3)
    reference.backward()
    torch.testing.assert_close(loss, reference.detach())
    torch.testing.assert_close(grad1, leaves[0].grad)
    torch.testing.assert_close(grad2, leaves[1].grad)
    loss_only, none1, none2 = nt_xent_with_gradient(z1, z2, 0.3, block_size, gradient=False)
    torch.testing.assert_close(loss_only, loss)
    assert none1 is None
    assert none2 is None
