"""Two-process gloo run: gathered negatives and rank-sliced cached gradients give the full-batch gradient."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.model.test_model_gradcache import (
    CHUNK,
    N_CELLS,
    assert_same_gradients,
    gradients,
    make_batch,
    make_plan,
)

# deterministic encodings (no dropout, no random augmentation): the ranks' random streams
# cannot match a single process, everything else is exercised
OBJECTIVES = {
    "mlm_weight": 0.0,
    "contrastive_weight": 1.0,
    "supervised_weight": 1.0,
    "subsample_rate": 0.0,
    "thinning": 1.0,
}
WORLD_SIZE = 2


def rank_gradients(rank: int, port: int, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    try:
        plan = make_plan("equal_bins", 0.0, CHUNK, **OBJECTIVES)
        share = N_CELLS // WORLD_SIZE
        batch = {key: value[rank * share : (rank + 1) * share] for key, value in make_batch(False).items()}
        plan.compute_gradients(batch, torch.Tensor.backward)
        grads = gradients(plan.module)
        for value in grads.values():  # what DDP does: average over ranks
            dist.all_reduce(value)
            value /= WORLD_SIZE
        if rank == 0:
            torch.save(grads, path)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_rank_gradient_equals_single_process_full_batch(tmp_path):
    path = str(tmp_path / "grads.pt")
    # fork: the ranks inherit this process's imports (spawn cannot import the tests package)
    mp.start_processes(
        rank_gradients, args=(free_port(), path), nprocs=WORLD_SIZE, join=True, start_method="fork"
    )
    plan = make_plan("equal_bins", 0.0, CHUNK, **OBJECTIVES)
    plan.compute_gradients(make_batch(False), torch.Tensor.backward)
    assert_same_gradients(torch.load(path), gradients(plan.module))
