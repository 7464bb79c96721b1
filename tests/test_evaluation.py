import keras
import numpy as np
import pytest

from trainstyles.pipeline.data import Split, batches, features
from trainstyles.pipeline.evaluation import (
    PREDICT_BATCH_SIZE,
    agreement,
    confusion_rows,
    predict,
    score_logits,
)
from trainstyles.pipeline.model import build_model
from trainstyles.pipeline.params import ModelParams


def test_test_metrics_from_logits():
    test = Split(np.zeros((3, 28, 28), np.uint8), np.array([0, 1, 2]))
    logits = np.array([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0]], dtype=np.float32)
    metrics = score_logits(logits, test)
    assert metrics["test_accuracy"] == pytest.approx(2 / 3)
    expected_loss = np.mean(
        [np.log1p(2 * np.exp(-5)), np.log1p(2 * np.exp(-5)), 5 + np.log1p(2 * np.exp(-5))]
    )
    assert metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_logits_are_those_of_keras_predict_to_the_bit():
    rng = np.random.default_rng(0)
    test = Split(rng.integers(0, 256, (600, 28, 28), np.uint8), rng.integers(0, 10, 600))
    model = build_model(ModelParams(hidden_units=[256, 128], num_classes=10, hidden_order=0))
    expected = model.predict(batches(test, PREDICT_BATCH_SIZE), verbose=0)
    # The control: the comparison sees how the images are batched, as all 600 in one call round
    # otherwise; where they do not, it could not tell a change of batching.
    if np.array_equal(keras.ops.convert_to_numpy(model(features(test))), expected):
        pytest.skip("on this CPU one batch of 600 gives the bits of batches of 256")
    assert np.array_equal(predict(model, test), expected)


def test_agreement_covers_each_pair_once():
    predictions = {
        "a": np.array([1, 2, 3, 4]),
        "b": np.array([1, 2, 0, 4]),
        "c": np.array([0, 0, 0, 0]),
    }
    assert agreement(predictions) == {"a_vs_b": 0.75, "a_vs_c": 0.0, "b_vs_c": 0.25}


def test_confusion_rows_name_the_classes():
    rows = confusion_rows(np.array([0, 9]), np.array([6, 9]))
    assert rows == [
        {"actual": "T-shirt/top", "predicted": "Shirt"},
        {"actual": "Ankle boot", "predicted": "Ankle boot"},
    ]
