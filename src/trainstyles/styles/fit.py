"""Style 1, train_fit: compile() + fit() with the callback zoo; Keras runs the whole loop."""

from pathlib import Path

import keras
import tensorflow as tf

from trainstyles import StageError
from trainstyles.callbacks import (
    LogSettings,
    StartEpoch,
    TerminateOnNaN,
    fit_callbacks,
    progress_verbosity,
)
from trainstyles.data import EpochBatches
from trainstyles.model import build_model, compile_model
from trainstyles.params import FitStyleParams, Params
from trainstyles.resume import Backup, BackupAndResume


def train(
    params: Params, train_batches: EpochBatches, val_batches, backup: Backup, log_dir: Path
) -> tuple[keras.Model, dict]:
    model = compile_model(build_model(params.model), params.train)
    return fit_with_zoo(model, params.train_fit, train_batches, val_batches, backup, log_dir)


def fit_with_zoo(
    model: keras.Model,
    style: FitStyleParams,
    train_batches: EpochBatches,
    val_batches,
    backup: Backup,
    log_dir: Path,
    **settings: float,
) -> tuple[keras.Model, dict]:
    """fit() with the callback zoo. The train_step styles call this unchanged: the tutorial's
    point is that overriding train_step keeps everything else fit() does. `settings` are logged
    with each epoch (callbacks.LogSettings)."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise StageError(
            "distribute.strategy = 'multi_worker': Keras 3's fit() fails across workers "
            "(keras-team/keras#20585); of the four styles, train_raw trains on several hosts"
        )
    zoo = fit_callbacks(style.callbacks, backup.best_model, log_dir)
    history = keras.callbacks.History()
    model.fit(
        train_batches.dataset,
        validation_data=val_batches,
        epochs=style.epochs,
        # Order matters: the zoo updates on each epoch's end before the backup records it.
        callbacks=[
            StartEpoch(train_batches),
            TerminateOnNaN(),
            LogSettings(**settings),
            *zoo,
            history,
            BackupAndResume(backup, history, zoo),
        ],
        verbose=progress_verbosity(),
    )
    return model, history.history
