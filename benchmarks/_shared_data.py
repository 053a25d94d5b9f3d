"""Where the benchmark scripts find the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """$CELLREP_SHARED_DATA, else the first ``shared/data`` folder above this checkout."""
    if os.environ.get("CELLREP_SHARED_DATA"):
        return Path(os.environ["CELLREP_SHARED_DATA"])
    for folder in Path(__file__).resolve().parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("shared") / "data"
