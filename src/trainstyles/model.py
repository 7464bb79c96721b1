"""The tutorial's model: an MLP 784 → 256 → 128 → 10 that outputs logits."""

import keras

from trainstyles.data import IMAGE_SIZE
from trainstyles.params import ModelParams, TrainParams


def build_model(params: ModelParams, model_class: type[keras.Model] = keras.Model) -> keras.Model:
    """The MLP as a functional model; `model_class` lets a style bring its own `train_step`."""
    inputs = keras.Input(shape=(IMAGE_SIZE,), name="pixels")
    hidden = inputs
    for units in params.hidden_units:
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    # No softmax: the loss takes logits (from_logits=True), which is numerically stabler.
    logits = keras.layers.Dense(params.num_classes, name="logits")(hidden)
    return model_class(inputs, logits, name="mlp")


def loss_function(reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)


def compile_model(model: keras.Model, params: TrainParams) -> keras.Model:
    """compile() as in the tutorial, for the three styles that train through fit()."""
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=loss_function(),
        metrics=["accuracy"],
        jit_compile=params.jit_compile,
        steps_per_execution=params.steps_per_execution,
    )
    return model
