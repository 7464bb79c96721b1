"""The tutorial's callback zoo, built from params for the styles that train through fit(), and
the callbacks the trainer adds around it."""

import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram.metadata import create_summary_metadata

from trainstyles.pipeline.data import EpochBatches
from trainstyles.pipeline.loop import divergence
from trainstyles.pipeline.params import CallbackParams

# Keras 3 warns on every tf.data input that fit()'s default shuffle=True is ignored. Harmless:
# our training batches shuffle themselves, seeded, inside the dataset (data.batches).
warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")


def fit_callbacks(
    params: CallbackParams, checkpoint: Path, log_dir: Path
) -> list[keras.callbacks.Callback]:
    """EarlyStopping, ModelCheckpoint, ReduceLROnPlateau and TensorBoard, where params name them.

    The checkpoint keeps the best epoch by its own monitor (val_accuracy) while EarlyStopping
    restores the best by val_loss: the saved model and the one left in memory can differ.
    """
    zoo: list[keras.callbacks.Callback] = []
    if params.early_stopping:
        zoo.append(keras.callbacks.EarlyStopping(**params.early_stopping.model_dump()))
    zoo.append(
        keras.callbacks.ModelCheckpoint(
            checkpoint, save_best_only=True, **params.checkpoint.model_dump()
        )
    )
    if params.reduce_lr_on_plateau:
        zoo.append(keras.callbacks.ReduceLROnPlateau(**params.reduce_lr_on_plateau.model_dump()))
    zoo.append(TensorBoard(log_dir, **params.tensorboard.model_dump()))
    return zoo


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, with each epoch's weight histograms bucketed by `histogram_buckets`.

    Keras has TensorBoard's histogram summary bucket every weight with TensorFlow ops, run
    eagerly at each epoch's end, through a float64 one-hot matrix of the weight's size times
    its buckets. The same summaries, to the same bits, are written here from NumPy's counts.
    """

    HISTOGRAM = create_summary_metadata(display_name=None, description=None)

    def _log_weights(self, epoch):
        if self.write_images:  # weights drawn as images: Keras' own way, never asked for here
            super()._log_weights(epoch)
            return
        with self._train_writer.as_default():
            for layer in self.model.layers:
                for weight in layer.weights:
                    tf.summary.write(
                        f"{weight.path.replace(':', '_')}/histogram",  # Keras' tag
                        histogram_buckets(keras.ops.convert_to_numpy(weight)),
                        step=epoch,
                        metadata=self.HISTOGRAM,
                    )
        self._train_writer.flush()


def histogram_buckets(values: np.ndarray, bucket_count: int = 30) -> np.ndarray:
    """TensorBoard's histogram of `values` (tensorboard.plugins.histogram.summary_v2._buckets),
    from the same float64 arithmetic: rows of [left edge, right edge, count], equal widths
    from the least value to the greatest, the greatest counted in the last bucket."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    low, high = data.min(), data.max()
    if low == high:  # every value the same: all in the last bucket, all edges at that value
        edges, counts = np.full(bucket_count, high), np.zeros(bucket_count)
        counts[-1] = data.size
        return np.stack([edges, edges, counts], axis=1)
    width = (high - low) / bucket_count
    index = np.minimum(np.floor((data - low) / width).astype(np.int32), bucket_count - 1)
    counts = np.bincount(index, minlength=bucket_count).astype(np.float64)
    edges = np.concatenate([[low], low + width * np.arange(1, bucket_count), [high]])
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


class StartEpoch(keras.callbacks.Callback):
    """Tells the training batches which epoch begins: fit() makes each epoch's iterator after
    on_epoch_begin, so epoch e gets the order of (seed, e), resumed runs included."""

    def __init__(self, batches: EpochBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.start_epoch(epoch)


class LogSettings(keras.callbacks.Callback):
    """Puts the learning rate each epoch trained with, and any fixed `settings` (the clip norm),
    in its logs, so History, the curves and TensorBoard show them for every style, not only for
    those with ReduceLROnPlateau. Runs before the zoo, which may cut the rate at the epoch's end.
    """

    def __init__(self, **settings: float):
        super().__init__()
        self.settings = settings

    def on_epoch_end(self, epoch, logs=None):
        learning_rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(learning_rate))
        logs.update(self.settings)


class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN, failing the stage with the epoch and step where the loss broke.

    It raises at the bad batch, before any epoch-end callback could checkpoint a broken model
    or back it up to resume from.
    """

    def __init__(self):
        super().__init__(raise_error=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            raise divergence(logs["loss"], self.epoch, batch + 1) from None
