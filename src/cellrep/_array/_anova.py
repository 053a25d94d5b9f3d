"""One-way ANOVA F-statistics per gene from sparse or dense data, without densifying."""

from __future__ import annotations

import numpy as np

from ._moments import grouped_column_moments


def anova_f_statistics(matrix, groups: np.ndarray) -> np.ndarray:
    """F-statistic of every column across the groups of rows, as ``sklearn.feature_selection.f_classif``.

    Parameters
    ----------
    matrix
        Dense, CSR or CSC matrix, samples as rows.
    groups
        Integer class code per row, ``0 .. n_groups - 1``; rows with a negative code are left out.
        Every code in that range must occur.

    Returns
    -------
    Float64 F-statistics. As in sklearn, a column that is constant over the used rows gives
    NaN (0/0) and a column constant within every class but not across them gives inf.
    """
    groups = np.asarray(groups, dtype=np.int64)
    used = groups[groups >= 0]
    n_groups = int(used.max()) + 1 if used.size else 0
    counts = np.bincount(used, minlength=n_groups).astype(np.float64)
    if n_groups < 2 or np.any(counts == 0):
        raise ValueError("ANOVA needs at least two groups, each with at least one sample.")
    if used.size <= n_groups:
        raise ValueError("ANOVA needs more samples than groups.")
    sums, squares = grouped_column_moments(matrix, groups, n_groups)
    n_samples = used.size
    square_of_total = sums.sum(axis=0) ** 2 / n_samples
    total_sum_of_squares = squares - square_of_total
    between = (sums**2 / counts[:, None]).sum(axis=0) - square_of_total
    within = total_sum_of_squares - between
    with np.errstate(divide="ignore", invalid="ignore"):
        return (between / (n_groups - 1)) / (within / (n_samples - n_groups))
