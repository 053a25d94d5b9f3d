"""Helpers shared by the model tests (imported by them; not a test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# what a DDP run in the test process leaves in os.environ, and pytest's marker (the script is not
# under pytest): a launched script must not inherit them
NOT_INHERITED = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "NODE_RANK",
    "LOCAL_RANK",
    "GLOBAL_RANK",
    "PYTEST_CURRENT_TEST",
)


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny models run far faster on one thread, especially on a shared, loaded machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_script(script: Path, *args) -> str:
    """Run ``script`` in a fresh one-thread Python process; its stdout (the test fails with its stderr)."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env |= {"OMP_NUM_THREADS": "1", "CELLREP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
