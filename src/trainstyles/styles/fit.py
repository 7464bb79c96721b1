"""Style 1, train_fit: compile() + fit() with the callback zoo; Keras runs the whole loop."""

from pathlib import Path

import keras

from trainstyles.callbacks import fit_callbacks, progress_verbosity
from trainstyles.model import build_model, compile_model
from trainstyles.params import FitStyleParams, Params


def train(params: Params, train_batches, val_batches, checkpoint: Path, log_dir: Path) -> dict:
    model = compile_model(build_model(params.model), params.train)
    return fit_with_zoo(model, params.train_fit, train_batches, val_batches, checkpoint, log_dir)


def fit_with_zoo(
    model: keras.Model, style: FitStyleParams, train_batches, val_batches, checkpoint, log_dir
) -> dict:
    """fit() with the callback zoo. The train_step styles call this unchanged: the tutorial's
    point is that overriding train_step keeps everything else fit() does."""
    history = model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=style.epochs,
        callbacks=fit_callbacks(style.callbacks, checkpoint, log_dir),
        verbose=progress_verbosity(),
    )
    return history.history
