"""train_fit: compile() + fit() with the callback zoo; Keras runs the whole loop."""

import keras
import tensorflow as tf

from trainstyles import StageError
from trainstyles.pipeline.model import build_model, compile_model
from trainstyles.pipeline.params import FitStyleParams, Params
from trainstyles.pipeline.styles import Run


def train(params: Params, run: Run) -> tuple[keras.Model, dict]:
    model = compile_model(build_model(params.model), params.train)
    return fit_with_zoo(model, params.train_fit, run)


def fit_with_zoo(
    model: keras.Model, style: FitStyleParams, run: Run, **settings: float
) -> tuple[keras.Model, dict]:
    """fit() with the callback zoo (`style.callbacks`). The train_step styles call this
    unchanged: the tutorial's point is that overriding train_step keeps everything else fit()
    does. `settings` are logged with each epoch."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise StageError(
            "distribute.strategy = 'multi_worker': Keras 3's fit() fails across workers "
            "(keras-team/keras#20585); of the styles, those that do not train through fit() "
            "train on several hosts"
        )
    history = keras.callbacks.History()
    model.fit(
        run.train_batches.dataset,
        validation_data=run.val_batches,
        epochs=style.epochs,
        callbacks=run.fit_callbacks(style.callbacks, history, **settings),
        verbose=run.verbose,
    )
    return model, history.history
