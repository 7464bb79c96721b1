"""The tutorial's callback zoo, built from params for the styles that train through fit(), and
the callbacks the trainer adds around it."""

import warnings
from pathlib import Path

import keras

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
    zoo.append(keras.callbacks.TensorBoard(log_dir, **params.tensorboard.model_dump()))
    return zoo


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
