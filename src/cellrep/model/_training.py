"""Training arguments that follow the steps that will really run, and quieter training output."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import warnings

DEFAULT_MAX_EPOCHS = 20
TIME_BOUNDED_MAX_EPOCHS = 100_000
MIN_STEPS_PER_EPOCH = 4
SCVI_TRAIN_SIZE = 0.9
HIDDEN_WARNINGS = (
    ".*[Ss]parse CSR tensor support is in beta.*",
    ".*Sparse invariant checks are implicitly disabled.*",
    # the chunk-window loader (_windows) is an IterableDataset of known length, read in-process
    ".*Your `IterableDataset` has `__len__` defined.*",
)
LIGHTNING_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


@dataclasses.dataclass
class TrainingArguments:
    max_epochs: int
    batch_size: int
    plan_kwargs: dict
    trainer_kwargs: dict


def budget_seconds(max_time) -> float | None:
    """Seconds of a ``max_time`` given as seconds, a dict of timedelta fields or a timedelta."""
    if max_time is None:
        return None
    if isinstance(max_time, dict):
        max_time = datetime.timedelta(**max_time)
    if isinstance(max_time, datetime.timedelta):
        return max_time.total_seconds()
    if isinstance(max_time, int | float) and max_time > 0:
        return float(max_time)
    raise ValueError(
        f"max_time must be positive seconds, a dict such as {{'minutes': 5}} or a timedelta, got {max_time!r}."
    )


def training_arguments(
    n_cells: int, max_epochs, batch_size: int, max_time, train_size, plan_kwargs: dict | None
) -> TrainingArguments:
    """Epochs, a batch size giving at least ``MIN_STEPS_PER_EPOCH`` steps, and the time budget."""
    seconds = budget_seconds(max_time)
    if max_epochs is None:
        max_epochs = DEFAULT_MAX_EPOCHS if seconds is None else TIME_BOUNDED_MAX_EPOCHS
    n_train = int(n_cells * (SCVI_TRAIN_SIZE if train_size is None else train_size))
    largest = max(2, n_train // MIN_STEPS_PER_EPOCH)
    if batch_size > largest:
        warnings.warn(
            f"batch_size {batch_size} would give fewer than {MIN_STEPS_PER_EPOCH} optimiser steps per epoch on "
            f"{n_train} training cells; using {largest}.",
            UserWarning,
            stacklevel=3,
        )
        batch_size = largest
    plan_kwargs = dict(plan_kwargs or {})
    trainer_kwargs = {}
    if seconds is not None:
        plan_kwargs["time_budget"] = seconds
        trainer_kwargs["max_time"] = datetime.timedelta(seconds=seconds)
    return TrainingArguments(max_epochs, batch_size, plan_kwargs, trainer_kwargs)


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


@contextlib.contextmanager
def quiet_training():
    """Hide Lightning's litlogger advertisement and the known warnings of HIDDEN_WARNINGS."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_RANK_ZERO_LOGGERS]
    tip_filter = _DropLitLoggerTip()
    for logger in loggers:
        logger.addFilter(tip_filter)
    try:
        with warnings.catch_warnings():
            for message in HIDDEN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(tip_filter)
