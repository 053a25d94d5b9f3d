"""Preprocessing: numba-accelerated normalization that never densifies sparse data."""

from ._normalize import log1p, log_normalize, normalize_total
from ._pearson import get_pearson_residuals, pearson_residuals
from ._rank_probit import get_rank_probit, rank_probit
from ._scale import scale
from ._select import select_genes

__all__ = [
    "get_pearson_residuals",
    "get_rank_probit",
    "log1p",
    "log_normalize",
    "normalize_total",
    "pearson_residuals",
    "rank_probit",
    "scale",
    "select_genes",
]
