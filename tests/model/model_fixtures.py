"""Helpers shared by the model tests (imported by them; not a test module)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny models run far faster on one thread, especially on a shared, loaded machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
