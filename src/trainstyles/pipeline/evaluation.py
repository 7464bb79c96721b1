"""The evaluate stage's figures: each model on the test set once, and how the styles agree."""

from itertools import combinations
from pathlib import Path

import keras
import numpy as np

from trainstyles import StageError
from trainstyles.pipeline.data import CLASS_NAMES, Split, features
from trainstyles.pipeline.model import loss_function
from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.styles import style_module

PREDICT_BATCH_SIZE = 256  # inference only; the logits are recorded as this size gives them
# Importing a style's module registers its own model class, if it has one, with Keras, so that
# its saved model loads. The style modules hold none of the trainer: evaluate does not depend on
# how training resumes, logs or checkpoints.
STYLE_MODULES = [style_module(style) for style in STYLES]


def load_model(model_path: Path) -> keras.Model:
    try:
        return keras.models.load_model(model_path)
    except (OSError, ValueError, TypeError) as error:
        raise StageError(
            f"cannot load the {model_path.stem} model from {model_path}: "
            f"{' '.join(str(error).split())[:300]}"
        ) from None


def predict(model: keras.Model, test: Split) -> np.ndarray:
    """The model's logits for every test image, a batch at a time.

    The model is called directly: predict() would first trace a function for each model, which
    costs more than the inference itself, and its logits are the same to the bit as these.
    """
    pixels = features(test)
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(model(pixels[start : start + PREDICT_BATCH_SIZE]))
            for start in range(0, len(pixels), PREDICT_BATCH_SIZE)
        ]
    )


def score_logits(logits: np.ndarray, test: Split) -> dict:
    return {
        "test_accuracy": float(np.mean(logits.argmax(axis=1) == test.labels)),
        "test_loss": float(loss_function()(test.labels, logits)),
    }


def agreement(predictions: dict[str, np.ndarray]) -> dict:
    """For each pair of styles, the share of test images on which both predict the same class."""
    return {
        f"{a}_vs_{b}": float(np.mean(predictions[a] == predictions[b]))
        for a, b in combinations(predictions, 2)
    }


def identical_weights(models: dict[str, keras.Model]) -> dict:
    """For each pair of styles, whether their weights are equal to the bit: the styles are the
    same math, so with the same epochs and callbacks they train the same model."""
    return {
        f"{a}_vs_{b}": all(
            np.array_equal(x, y)
            for x, y in zip(models[a].get_weights(), models[b].get_weights(), strict=True)
        )
        for a, b in combinations(models, 2)
    }


def confusion_rows(labels: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """One row per test image, as DVC's confusion template wants."""
    return [
        {"actual": CLASS_NAMES[actual], "predicted": CLASS_NAMES[guess]}
        for actual, guess in zip(labels, predicted, strict=True)
    ]
