"""train_clipped: the train_step override, clipping gradients by their global norm."""

import math
from functools import partial

import keras
import tensorflow as tf

from trainstyles.pipeline.model import build_model, compile_model
from trainstyles.pipeline.params import Params
from trainstyles.pipeline.replicas import summed_gradients
from trainstyles.pipeline.styles import Run
from trainstyles.pipeline.styles.fit import fit_with_zoo
from trainstyles.pipeline.styles.step import StepModel

# The equivalence proof: with an infinite clip norm, the same weights as train_step, to the bit.
SAME_MATH_AS = "train_step"
NEUTRAL_SETTINGS = {"clip_norm": math.inf}


@keras.saving.register_keras_serializable(package="trainstyles")
class ClippedModel(StepModel):
    """StepModel's step, each update clipped to `clip_norm`; reports the norm before clipping
    as `grad_norm`."""

    def __init__(self, *args, clip_norm: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = clip_norm
        # A metric attribute is in self.metrics, so fit() resets it at each epoch's start.
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")

    def apply_gradients(self, gradients: list) -> None:
        grad_norm = tf.linalg.global_norm(summed_gradients(gradients))  # what the clip must tame
        self.grad_norm_tracker.update_state(grad_norm)
        if not math.isinf(self.clip_norm):  # an infinite one would scale by ∞·0 = NaN
            # Every replica's share scaled by the same factor: their sum is clipped to clip_norm.
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm, use_norm=grad_norm)
        super().apply_gradients(gradients)

    def test_step(self, data):
        # Evaluation computes no gradients: without this, fit() would log a meaningless
        # val_grad_norm of 0 and evaluate() would return one value too many.
        logs = super().test_step(data)
        del logs["grad_norm"]
        return logs

    def get_config(self):
        return {**super().get_config(), "clip_norm": self.clip_norm}


def train(params: Params, run: Run) -> tuple[keras.Model, dict]:
    style = params.train_clipped
    model_class = partial(ClippedModel, clip_norm=style.clip_norm)
    model = compile_model(build_model(params.model, model_class), params.train)
    # The threshold is logged beside grad_norm, so the curves show what the clip had to tame.
    return fit_with_zoo(model, style, run, clip_norm=style.clip_norm)
