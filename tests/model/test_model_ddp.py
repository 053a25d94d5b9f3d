"""CellEncoder.train through Lightning's DDP strategy (gloo, CPU): one step of two processes equals one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scvi
import torch
import torch.distributed as dist
from tests.model.ddp_one_step import GLOBAL_BATCH, one_step, planted_counts
from tests.model.model_fixtures import run_script, single_torch_thread  # noqa: F401

from cellrep.model import CellEncoder
from cellrep.model._distributed import distributed_training, shared_split

SCRIPT = Path(__file__).with_name("ddp_one_step.py")
RELATIVE_TOLERANCE = 1e-5


def relative_update_difference(reference: dict, other: dict) -> dict[str, float]:
    """Per parameter ``|Δ_other - Δ_reference| / |Δ_reference|`` of the step's updates Δ."""
    differences = {}
    for key, before in reference["before"].items():
        assert torch.equal(before, other["before"][key]), f"{key} starts from another initialisation"
        update = reference["after"][key].double() - before.double()
        other_update = other["after"][key].double() - before.double()
        if update.norm() > 0 or other_update.norm() > 0:
            differences[key] = float((other_update - update).norm() / update.norm())
    return differences


@pytest.fixture
def no_process_group():
    """The one-process DDP run leaves a world-of-one process group and its environment in this worker."""
    environment = dict(os.environ)
    yield
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(environment)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_ddp_step_equals_one_process_step(tmp_path, no_process_group, monkeypatch):
    monkeypatch.setattr(scvi.settings, "_seed", None)  # as in the fresh script: the split uses seed 0
    # one process, same strategy and distributed sampler: its one batch is the two ranks' batches together
    # strategy='ddp' relaunches sys.argv, so the processes run the helper as a script
    run_script(SCRIPT, tmp_path / "two.pt", 2, "none")
    two = torch.load(tmp_path / "two.pt")
    reference = one_step(devices=1, chunk_size=None)
    differences = relative_update_difference(reference, two)
    assert len(differences) > 20  # encoder, projection and label heads all moved
    assert max(differences.values()) < RELATIVE_TOLERANCE, differences
    # rank 0 logs the contrastive loss over the gathered global batch
    for key in ("contrastive_loss_train", "supervised_loss_train", "train_loss"):
        assert two["losses"][key] == pytest.approx(reference["losses"][key], rel=RELATIVE_TOLERANCE)


def test_ddp_strategy_names_and_per_process_batch():
    kwargs, batch = distributed_training({"strategy": "ddp_spawn", "devices": 2}, 128, n_obs=1000)
    assert kwargs["strategy"] == "ddp_spawn_find_unused_parameters_true"
    assert batch == 64
    train, validation, test = kwargs["datasplitter_kwargs"]["external_indexing"]
    assert (len(train), len(validation), len(test)) == (900, 100, 0)
    assert np.array_equal(np.sort(np.concatenate([train, validation])), np.arange(1000))
    # the same split in every process
    assert all(
        np.array_equal(a, b)
        for a, b in zip(shared_split(1000, None, None), (train, validation, test), strict=True)
    )
    assert distributed_training({"devices": 1}, 128, n_obs=1000) == ({"devices": 1}, 128)
    # several devices without a strategy: Lightning would pick 'ddp', so it gets the same checks
    with pytest.raises(ValueError, match=r"python train\.py"):
        distributed_training({"devices": 2}, 128, n_obs=1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "fsdp", "devices": 2}, "DDP"),
        ({"strategy": "ddp", "devices": "auto"}, "devices=N"),
        ({"strategy": "ddp_notebook", "devices": 256}, "smaller than"),
    ],
)
def test_unsupported_strategy_arguments_say_what_works(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed_training(kwargs, 128, n_obs=1000)


def test_plain_ddp_under_pytest_names_the_working_paths():
    adata = planted_counts()
    CellEncoder.setup_anndata(adata)
    model = CellEncoder(adata, n_layers=1, d_model=8, n_heads=2, max_seq_len=8, n_token_genes=None)
    with pytest.raises(ValueError, match=r"python train\.py"):
        model.train(max_epochs=1, batch_size=GLOBAL_BATCH, accelerator="cpu", devices=2, strategy="ddp")
