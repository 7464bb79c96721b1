"""The training styles, one module each: style `train_<name>` is `styles/<name>.py`'s train().

The list of styles is params.STYLES. A style's module gives `train(params, run)`, which returns
the trained model and its history (one list per logged figure, one entry per epoch), and may
name the style whose bits it must reproduce (`SAME_MATH_AS`, with `NEUTRAL_SETTINGS`), a claim
the equivalence proof checks.
"""

import ast
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from trainstyles.pipeline.data import EpochBatches

if TYPE_CHECKING:  # types only: evaluate imports the styles, and must not depend on training's
    import keras
    import tensorflow as tf

    from trainstyles.pipeline.params import CallbackParams
    from trainstyles.pipeline.resume import Backup


def style_module(style: str) -> ModuleType:
    """The module of `style` (train_fit: trainstyles.pipeline.styles.fit). Importing it registers
    its own model class, if it has one, with Keras, so that the models it saved load."""
    return import_module(f"{__name__}.{style.removeprefix('train_')}")


def style_source(style: str) -> Path:
    """The file of `style`'s module, read without importing it (nor TensorFlow)."""
    return Path(__file__).parent / f"{style.removeprefix('train_')}.py"


def trains_through_fit(style: str) -> bool:
    """Whether `style` trains through Keras' fit() and its callback zoo: its module calls
    fit.py's `fit_with_zoo`. Read from the source, without TensorFlow; the one answer that the
    report and the tests read."""
    tree = ast.parse(style_source(style).read_text())
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fit_with_zoo"
        for node in ast.walk(tree)
    )


class FitCallbacks(Protocol):
    """training.callbacks_around_zoo with its run's parts bound: what fit() is given."""

    def __call__(
        self, zoo: "CallbackParams", history: "keras.callbacks.History", **settings: float
    ) -> "list[keras.callbacks.Callback]": ...


@dataclass(frozen=True)
class Run:
    """What a style's train() is given besides params; training.train_on makes it."""

    train_batches: EpochBatches
    val_batches: "tf.data.Dataset"
    backup: "Backup"  # the resume points, and where the best model goes
    log_dir: Path  # TensorBoard's
    verbose: int  # Keras' progress verbosity
    # fit()'s callbacks: the zoo that `CallbackParams` names, with what the trainer adds (each
    # epoch's batch order, a stop on NaN, the logged settings, History, the resume points).
    fit_callbacks: FitCallbacks
