import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellrep as cr


@pytest.fixture
def labelled():
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "b", "unknown"]
    obs = pd.DataFrame({"cell_type": truth, "cell_type_pred": predicted}, index=[f"c{i}" for i in range(6)])
    return ad.AnnData(np.zeros((6, 2), dtype=np.float32), obs=obs)


def test_confusion_normalized(labelled, tmp_path, assert_png, image_array):
    ax = cr.pl.confusion(labelled, true_key="cell_type", pred_key="cell_type_pred", save=tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    values = image_array(ax)
    assert values.shape == (3, 3)  # true {a, b, c} × predicted {a, b, unknown}
    np.testing.assert_allclose(values, [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 1]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "unknown"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_xlabel() == "predicted (cell_type_pred)"
    assert ax.get_ylabel() == "true (cell_type)"
    assert len(ax.texts) == 9


def test_confusion_counts_into_given_axes(labelled, image_array):
    import matplotlib.pyplot as plt

    _, given = plt.subplots()
    ax = cr.pl.confusion(labelled, true_key="cell_type", pred_key="cell_type_pred", normalize=False, ax=given)
    assert ax is given
    np.testing.assert_array_equal(image_array(ax), [[2, 1, 0], [0, 2, 0], [0, 0, 1]])


def test_confusion_missing_key(labelled):
    with pytest.raises(ValueError, match="nope"):
        cr.pl.confusion(labelled, true_key="nope", pred_key="cell_type_pred")
