import numpy as np
import pandas as pd
import pytest

import cellrep as cr


class FakeModel:
    def __init__(self, history):
        self.history = history


def _frame(key, values):
    return pd.DataFrame({key: values}, index=pd.Index(np.arange(len(values)), name="epoch"))


@pytest.fixture
def model():
    keys = {
        "mlm_loss_train": [3.0, 2.0, 1.5, 1.2],
        "mlm_loss_validation": [3.1, 2.2, 1.8, 1.6],
        "contrastive_loss_train": [5.0, 4.0, 3.5, 3.0],
        "contrastive_loss_validation": [5.2, 4.4, 4.0, 3.9],
        "supervised_loss_train": [2.0, 1.0, 0.5, 0.3],
        "train_loss_epoch": [10.0, 7.0, 5.5, 4.5],  # scvi-tools' total loss
        "validation_loss": [10.5, 7.5, 6.0, 5.5],
        "lr": [1e-3, 1e-3, 1e-3, 1e-3],  # no split: ignored
        "supervised_loss_validation": [0.0, 0.0, 0.0, 0.0],  # switched off: left out
        "train_loss_step": [1.0, 2.0, 3.0, 4.0],  # neither suffix: ignored
    }
    return FakeModel({key: _frame(key, values) for key, values in keys.items()})


def test_training_history_panels(model, tmp_path, assert_png):
    figure = cr.pl.training_history(model, save=tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["mlm loss", "contrastive loss", "supervised loss", "loss"]
    assert [len(ax.lines) for ax in axes] == [2, 2, 1, 2]
    np.testing.assert_allclose(axes[0].lines[1].get_ydata(), [3.1, 2.2, 1.8, 1.6])
    assert [text.get_text() for text in axes[0].get_legend().get_texts()] == ["train", "validation"]
    assert axes[0].get_xlabel() == "epoch"


def test_training_history_selected_objectives_and_errors(model):
    figure = cr.pl.training_history(model, objectives=["contrastive_loss"])
    assert len(figure.axes) == 1
    with pytest.raises(ValueError, match="No curves"):
        cr.pl.training_history(model, objectives=["kl"])
    with pytest.raises(ValueError, match="train the model"):
        cr.pl.training_history(FakeModel({}))
