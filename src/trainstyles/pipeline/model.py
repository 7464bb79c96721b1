"""The tutorial's model: an MLP 784 → 256 → 128 → 10 that outputs logits."""

import keras
import numpy as np

from trainstyles.pipeline.data import IMAGE_SIZE
from trainstyles.pipeline.params import ModelParams, TrainParams


def build_model(params: ModelParams, model_class: type[keras.Model] = keras.Model) -> keras.Model:
    """The MLP as a functional model; `model_class` lets a style bring its own `train_step`."""
    inputs = keras.Input(shape=(IMAGE_SIZE,), name="pixels")
    hidden = inputs
    for units in params.hidden_units:
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    # No softmax: the loss takes logits (from_logits=True), which is numerically stabler.
    logits = keras.layers.Dense(params.num_classes, name="logits")(hidden)
    model = model_class(inputs, logits, name="mlp")
    if params.hidden_order:
        reorder_hidden_units(model, params.hidden_order)
    return model


def reorder_hidden_units(model: keras.Model, order_seed: int) -> None:
    """Shuffle the first hidden layer's units, as initialized, by `order_seed`.

    The model computes the same function and trains the same way in exact arithmetic: only
    the next layer's matmul sums the units in another order, so it rounds differently. That is
    what another machine's kernels do, on any device: the sweep uses it as their stand-in.
    """
    first, second = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:2]
    kernel, bias = first.get_weights()
    order = np.random.default_rng(order_seed).permutation(kernel.shape[1])
    first.set_weights([kernel[:, order], bias[order]])
    next_kernel, next_bias = second.get_weights()
    second.set_weights([next_kernel[order], next_bias])


def loss_function(reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)


def compile_model(
    model: keras.Model,
    params: TrainParams,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> keras.Model:
    """compile() as in the tutorial (Adam, unless a style brings its own optimizer), for the
    styles that train through fit()."""
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(params.learning_rate),
        loss=loss_function(),
        metrics=["accuracy"],
        jit_compile=params.jit_compile,
        steps_per_execution=params.steps_per_execution,
    )
    return model
