"""Style 4, train_clipped: the train_step override, clipping gradients by their global norm."""

import math
from functools import partial
from pathlib import Path

import keras
import tensorflow as tf

from trainstyles.data import EpochBatches
from trainstyles.model import build_model, compile_model
from trainstyles.params import Params
from trainstyles.resume import Backup
from trainstyles.styles.fit import fit_with_zoo


@keras.saving.register_keras_serializable(package="trainstyles")
class ClippedModel(keras.Model):
    """Clips each update to `clip_norm` and reports the norm before clipping as `grad_norm`."""

    def __init__(self, *args, clip_norm: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = clip_norm
        # A metric attribute is in self.metrics, so fit() resets it at each epoch's start.
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        # Under a strategy each replica holds its share of the gradient and apply() sums the
        # shares: the norm to clip by is that of their sum (one replica alone: its gradient).
        summed = tf.distribute.get_replica_context().all_reduce("sum", gradients)
        grad_norm = tf.linalg.global_norm(summed)  # before clipping: what the clip had to tame
        if not math.isinf(self.clip_norm):  # an infinite one would scale by ∞·0 = NaN
            # Every share scaled by the same factor: their sum is clipped to clip_norm.
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm, use_norm=grad_norm)
        self.optimizer.apply(gradients, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                # As in StepModel: the mean itself, not its share per replica.
                replicas = self.distribute_strategy.num_replicas_in_sync
                metric.update_state(loss * replicas, sample_weight=tf.shape(x)[0])
            elif metric.name == "grad_norm":
                metric.update_state(grad_norm)
            else:
                metric.update_state(y, y_pred)
        return self.get_metrics_result()

    def test_step(self, data):
        # Evaluation computes no gradients: without this, fit() would log a meaningless
        # val_grad_norm of 0 and evaluate() would return one value too many.
        logs = super().test_step(data)
        del logs["grad_norm"]
        return logs

    def get_config(self):
        return {**super().get_config(), "clip_norm": self.clip_norm}


def train(
    params: Params, train_batches: EpochBatches, val_batches, backup: Backup, log_dir: Path
) -> tuple[keras.Model, dict]:
    style = params.train_clipped
    model_class = partial(ClippedModel, clip_norm=style.clip_norm)
    model = compile_model(build_model(params.model, model_class), params.train)
    # The threshold is logged beside grad_norm, so the curves show what the clip had to tame.
    return fit_with_zoo(
        model, style, train_batches, val_batches, backup, log_dir, clip_norm=style.clip_norm
    )
