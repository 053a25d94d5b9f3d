"""The harness methods cellencoder, cellencoder_untrained and cellencoder_finetuned on planted types."""

from __future__ import annotations

import numpy as np
import pytest
from tests.model.model_fixtures import single_torch_thread  # noqa: F401
from tests.model.test_model_training import planted_types

from cellrep.benchmark import METHODS, run_benchmark
from cellrep.benchmark import _encoder_methods as encoder_methods

NAMES = ["cellencoder_untrained", "cellencoder", "cellencoder_finetuned"]


@pytest.fixture
def short_budget():
    previous = encoder_methods._settings["minutes"]
    encoder_methods.set_encoder_minutes(0.05)
    yield
    encoder_methods.set_encoder_minutes(previous)


def test_encoder_methods_are_registered_slow_and_on_request():
    for name in NAMES:
        assert METHODS[name].slow
        assert not METHODS[name].default
    with pytest.raises(ValueError, match="positive"):
        encoder_methods.set_encoder_minutes(0)


def test_encoder_methods_within_and_on_an_unseen_batch(short_budget):
    reference = planted_types(n_per_type=30, seed=0)
    reference.obs["batch"] = "a"
    query = planted_types(n_per_type=20, seed=1)
    query.obs["batch"] = "b"
    results = run_benchmark(
        reference,
        "cell_type",
        methods=NAMES,
        tasks=["within", "cross_dataset"],
        seeds=[0],
        query=query,
        progress=False,
    )
    assert (results["error"] == "").all(), results["error"].tolist()
    assert set(results["task"]) == {"within", "cross_dataset"}
    assert (results["macro_f1"] > 0.8).all(), results[["task", "method", "macro_f1"]]
    # the query batch is unseen: the encoder pretrains on reference + query cells (no query labels)
    union = encoder_methods._pretraining_cells(reference, query)
    assert union.n_obs == reference.n_obs + query.n_obs
    assert list(union.obs.columns) == []
    assert encoder_methods._pretraining_cells(reference, reference[:10]).n_obs == reference.n_obs
    assert np.isfinite(results["fit_seconds"]).all()
