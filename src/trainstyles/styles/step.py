"""Style 2, train_step: fit() and its callbacks, with our own train_step (the Keras 3 contract)."""

from pathlib import Path

import keras
import tensorflow as tf

from trainstyles.data import EpochBatches
from trainstyles.model import build_model, compile_model
from trainstyles.params import Params
from trainstyles.resume import Backup
from trainstyles.styles.fit import fit_with_zoo


@keras.saving.register_keras_serializable(package="trainstyles")
class StepModel(keras.Model):
    """The MLP with one training step written out; fit() still drives epochs and callbacks."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            # The loss function is the one configured in compile().
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                # Weighted by batch size as fit() does, so the short last batch counts right.
                # Under a strategy compute_loss() divides this replica's mean by the number of
                # replicas, as the optimizer sums their gradients: the metric wants it whole.
                replicas = self.distribute_strategy.num_replicas_in_sync
                metric.update_state(loss * replicas, sample_weight=tf.shape(x)[0])
            else:
                metric.update_state(y, y_pred)
        # What we return is what the progress bar, History and the callbacks see.
        return self.get_metrics_result()


def train(
    params: Params, train_batches: EpochBatches, val_batches, backup: Backup, log_dir: Path
) -> tuple[keras.Model, dict]:
    model = compile_model(build_model(params.model, StepModel), params.train)
    return fit_with_zoo(model, params.train_step, train_batches, val_batches, backup, log_dir)
