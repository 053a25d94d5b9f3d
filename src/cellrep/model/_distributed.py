"""Training across processes: Lightning's DDP strategies with the contrastive batch split over ranks.

scvi-tools does the data side: a DDP strategy makes its ``DataSplitter`` hand each rank a
disjoint share of the cells through :class:`scvi.dataloaders.BatchDistributedSampler` (padded
to equal shares). The training plan gathers every rank's embeddings, so the contrastive
negatives span all processes and one step's gradient is that of the global batch.

scvi-tools draws its train/validation split in each process from ``scvi.settings.seed``;
unseeded (its default), every rank would draw its own and the ranks' shares would overlap. So
under DDP the split is drawn here with ``scvi.settings.seed`` (0 when unset), the same in every
process, and passed as ``external_indexing``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

DDP_STRATEGIES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
UNUSED_SUFFIXES = ("_find_unused_parameters_true", "_find_unused_parameters_false")
SPLIT_SEED = 0


def _relaunch_problem() -> str | None:
    """Why relaunching ``sys.argv`` (what ``strategy='ddp'`` does) would not rerun this training."""
    if "PYTEST_CURRENT_TEST" in os.environ:  # also set in pytest-xdist workers, whose argv is '-c'
        return "would rerun the test session"
    if sys.argv[0] in ("", "-c", "-"):
        return "cannot rerun a `python -c` command, a script read from stdin or an interactive session"
    return None


def _n_processes(devices, num_nodes) -> int:
    if isinstance(devices, bool) or not isinstance(devices, int | list | tuple) or devices in (0, -1):
        raise ValueError(
            f"A DDP strategy needs the number of processes per machine: pass devices=N (an int), got {devices!r}."
        )
    per_node = len(devices) if isinstance(devices, list | tuple) else devices
    return per_node * (num_nodes or 1)


def _strategy_name(strategy: str, n_processes: int) -> str:
    base = strategy
    for suffix in UNUSED_SUFFIXES:
        base = base.removesuffix(suffix)
    if base not in DDP_STRATEGIES:
        raise ValueError(
            f"CellEncoder.train supports strategy=None/'auto' (one process) or one of {DDP_STRATEGIES} "
            f"(optionally a lightning.pytorch.strategies.DDPStrategy), got {strategy!r}."
        )
    problem = (
        _relaunch_problem() if base == "ddp" and n_processes > 1 and "LOCAL_RANK" not in os.environ else None
    )
    if problem:
        raise ValueError(
            f"strategy='ddp' relaunches this command line (sys.argv) once per extra process, which {problem}: "
            "run the training as a script (`python train.py`), or use strategy='ddp_notebook' (fork) here."
        )
    # heads an objective does not use (MLM, label head) get no gradient in a step
    return f"{base}_find_unused_parameters_true"


def shared_split(n_obs: int, train_size: float | None, validation_size: float | None) -> list[np.ndarray]:
    """scvi-tools' ``DataSplitter`` split (train, validation, test indices) with ``scvi.settings.seed`` or 0."""
    import scvi
    from scvi.dataloaders._data_splitting import validate_data_split

    train_size_is_none = not train_size
    n_train, n_val = validate_data_split(
        n_obs,
        0.9 if train_size_is_none else float(train_size),
        validation_size,
        None,
        False,
        train_size_is_none,
    )
    seed = SPLIT_SEED if scvi.settings.seed is None else scvi.settings.seed
    indices = np.random.RandomState(seed=seed).permutation(n_obs)
    return [indices[n_val : n_val + n_train], indices[:n_val], indices[n_val + n_train :]]


def distributed_training(trainer_kwargs: dict, batch_size: int, n_obs: int) -> tuple[dict, int]:
    """Training arguments for ``strategy`` and the per-process batch of a global ``batch_size``.

    Parameters
    ----------
    trainer_kwargs
        Keyword arguments of :meth:`CellEncoder.train` (``strategy``, ``devices``,
        ``num_nodes``, ``train_size``, ``validation_size``, ``datasplitter_kwargs``); not modified.
    batch_size
        The global (contrastive) batch: cells per optimiser step over all processes.
    n_obs
        Cells of the registered AnnData.

    Returns
    -------
    The arguments (a DDP strategy name gains ``_find_unused_parameters_true``; unless given,
    the split comes from :func:`shared_split`) and the batch of each process,
    ``batch_size // n_processes``.

    Raises
    ------
    ValueError
        For a strategy other than DDP, ``devices`` that is not a count or list, a batch smaller
        than the number of processes, or ``strategy='ddp'`` under pytest or ``python -c``.
    """
    from lightning.pytorch.strategies import DDPStrategy, Strategy

    strategy = trainer_kwargs.get("strategy")
    devices = trainer_kwargs.get("devices")
    several = (isinstance(devices, int) and not isinstance(devices, bool) and devices > 1) or (
        isinstance(devices, list | tuple) and len(devices) > 1
    )
    if strategy in (None, "auto") and several:
        strategy = "ddp"  # what Lightning picks for several devices: give it the DDP handling and checks
    elif strategy is None or strategy in ("auto", "single_device"):
        return trainer_kwargs, batch_size
    kwargs = dict(trainer_kwargs)
    if not isinstance(strategy, str | DDPStrategy):
        kind = type(strategy).__name__ if isinstance(strategy, Strategy) else repr(strategy)
        raise ValueError(f"CellEncoder.train supports DDP strategies only, got {kind}.")
    n_processes = _n_processes(kwargs.get("devices", "auto"), kwargs.get("num_nodes", 1))
    if isinstance(strategy, str):
        kwargs["strategy"] = _strategy_name(strategy, n_processes)
    if batch_size < n_processes:
        raise ValueError(f"batch_size {batch_size} is smaller than the {n_processes} processes.")
    splitter = dict(kwargs.get("datasplitter_kwargs") or {})
    if "external_indexing" not in splitter:
        splitter["external_indexing"] = shared_split(
            n_obs, kwargs.pop("train_size", None), kwargs.pop("validation_size", None)
        )
        kwargs["datasplitter_kwargs"] = splitter
    return kwargs, batch_size // n_processes


# --- collectives of the training plan (no-ops in one process) ---------------------------------
def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Concatenate the embeddings of all DDP ranks so negatives span devices (autograd-aware)."""
    if not distributed():
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z), dim=0)


def gather_detached(z: torch.Tensor) -> tuple[torch.Tensor, slice]:
    """All ranks' embeddings (equal shares, as DistributedSampler gives) and this rank's rows."""
    if not distributed():
        return z, slice(0, z.shape[0])
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.contiguous())
    start = dist.get_rank() * z.shape[0]
    return torch.cat(parts), slice(start, start + z.shape[0])


def global_sum(value: float, device: torch.device) -> float:
    if not distributed():
        return float(value)
    tensor = torch.tensor(float(value), device=device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor)
