"""train_step: fit() and its callbacks, with our own train_step (the Keras 3 contract)."""

import keras
import tensorflow as tf

from trainstyles.pipeline.model import build_model, compile_model
from trainstyles.pipeline.params import Params
from trainstyles.pipeline.replicas import track_mean_loss
from trainstyles.pipeline.styles import Run
from trainstyles.pipeline.styles.fit import fit_with_zoo

# The equivalence proof: with the same epochs and callbacks, the same weights as fit(), to the bit.
SAME_MATH_AS = "train_fit"


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
        self.apply_gradients(gradients)
        for metric in self.metrics:
            if metric.name == "loss":
                # Weighted by batch size as fit() does, so the short last batch counts right.
                track_mean_loss(metric, loss, tf.shape(x)[0])
        # The compiled metrics (accuracy); what we return is what the progress bar, History
        # and the callbacks see.
        return self.compute_metrics(x, y, y_pred)

    def apply_gradients(self, gradients: list) -> None:
        """The update itself: a style that changes the gradients first overrides this."""
        self.optimizer.apply(gradients, self.trainable_variables)


def train(params: Params, run: Run) -> tuple[keras.Model, dict]:
    model = compile_model(build_model(params.model, StepModel), params.train)
    return fit_with_zoo(model, params.train_step, run)
