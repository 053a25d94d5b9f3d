"""Helpers shared by the pp tests: densify, snapshot an AnnData to prove it was left untouched."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def to_dense(matrix) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


def snapshot(adata) -> dict:
    """Everything a failing call must not change."""
    return {
        "X": to_dense(adata.X).copy(),
        "dtype": adata.X.dtype,
        "type": type(adata.X),
        "layers": {key: to_dense(value).copy() for key, value in adata.layers.items()},
        "obs": list(adata.obs.columns),
        "var": list(adata.var.columns),
        "uns": sorted(adata.uns.keys()),
    }


def assert_unchanged(adata, before: dict) -> None:
    after = snapshot(adata)
    np.testing.assert_array_equal(after.pop("X"), before["X"])
    for key, value in after.pop("layers").items():
        np.testing.assert_array_equal(value, before["layers"][key])
    assert after == {key: before[key] for key in after}
