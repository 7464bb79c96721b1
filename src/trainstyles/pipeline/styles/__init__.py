"""The training styles, one module each: style `train_<name>` is `styles/<name>.py`'s train().

The list of styles is params.STYLES. A style's module gives `train(params, run)`, which returns
the trained model and its history (one list per logged figure, one entry per epoch), and may
name the style whose bits it must reproduce (`SAME_MATH_AS`, with `NEUTRAL_SETTINGS`), a claim
the equivalence proof checks.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType

from trainstyles.pipeline.data import EpochBatches


def style_module(style: str) -> ModuleType:
    """The module of `style` (train_fit: trainstyles.pipeline.styles.fit). Importing it registers
    its own model class, if it has one, with Keras, so that the models it saved load."""
    return import_module(f"{__name__}.{style.removeprefix('train_')}")


@dataclass(frozen=True)
class Run:
    """What a style's train() is given besides params; training.train_on makes it."""

    train_batches: EpochBatches
    val_batches: object  # a tf.data.Dataset
    backup: object  # resume.Backup: the resume points, and where the best model goes
    log_dir: Path  # TensorBoard's
    verbose: int  # Keras' progress verbosity
    # fit()'s callbacks: the zoo that `CallbackParams` names, with what the frame adds (each
    # epoch's batch order, a stop on NaN, the logged settings, History, the resume points).
    fit_callbacks: Callable[..., list]
