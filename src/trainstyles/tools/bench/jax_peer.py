"""The JAX peers: the styles' MLP, data, batch size, optimizer and loss in JAX on the CPU, two
ways. "a jitted step per batch" calls one compiled step for each batch, as a JAX tutorial does;
"the epoch as one lax.scan" compiles the whole epoch into one call: the full batches stacked and
scanned, the ragged last batch (55,000 images are 429 batches of 128 and one of 88) one more
step at its own shape inside the same call, with no padding. Each epoch ends with a jitted
validation pass over the validation set, as the styles' epochs do."""

import os
import time

import numpy as np

from trainstyles.pipeline.data import Split, features
from trainstyles.pipeline.params import Params
from trainstyles.tools.bench.dispatches import Counted
from trainstyles.tools.bench.figures import JAX_SCAN, JAX_STEP, layer_shapes

KERAS_EPSILON = 1e-7  # Adam's epsilon in Keras; optax's and PyTorch's default is 1e-8


def use_cores(count: int) -> None:
    """This process on `count` of its CPUs, before JAX starts. XLA's CPU backend sizes its
    thread pools by the CPUs the process may run on and takes no thread count of its own: so
    it runs on as many cores as the styles' `train.intra_op_threads`."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:count])


def timed_jax(name: str, params: Params, train: Split, val: Split, epochs: int) -> dict:
    """Seconds of `epochs` epochs of JAX peer `name`, after a warm-up epoch (compiling); the
    dispatches of one more epoch, and its training loss, validation loss and accuracy."""
    import jax  # noqa: PLC0415 - optional: the `bench` extra

    x, y = jax.device_put(features(train)), jax.device_put(train.labels.astype(np.int32))
    val_x, val_y = jax.device_put(features(val)), jax.device_put(val.labels.astype(np.int32))
    batch_size, rng = params.train.batch_size, np.random.default_rng(params.seed)
    step = make_step(params.train.learning_rate)
    evaluate = Counted(jax.jit(validation))
    if name == JAX_STEP:
        run = Counted(jax.jit(step))

        def epoch(state, order):
            for begin in range(0, len(order), batch_size):
                state = run(state, x, y, order[begin : begin + batch_size])
            return state
    elif name == JAX_SCAN:
        run = Counted(jax.jit(scanned_epoch(step, batch_size)))

        def epoch(state, order):
            return run(state, x, y, order)
    else:
        raise ValueError(f"no JAX peer {name!r}")

    state, starts, losses = initial_state(params, jax.random.key(params.seed)), [], {}
    # A warm-up epoch, `epochs` timed ones, one counted, and the start of one more closes it.
    for number in range(epochs + 3):
        starts.append(time.perf_counter())
        if number == epochs + 2:
            break
        if number == epochs + 1:
            run.calls = evaluate.calls = 0
        # The loss sum starts again from a host zero that travels with the first call.
        state = epoch((*state[:3], np.float32(0)), rng.permutation(len(y)).astype(np.int32))
        val_loss, val_accuracy = evaluate(state[0], val_x, val_y)
        # Reading the figures waits for the device: an epoch ends when its work is done.
        losses = {
            "loss": float(state[3]) / len(y),
            "val_loss": float(val_loss),
            "val_accuracy": float(val_accuracy),
        }
    return {
        "epochs": list(np.diff(starts[1 : epochs + 2])),
        "dispatches_per_epoch": run.calls + evaluate.calls,
        "losses": losses,
    }


def initial_state(params: Params, key) -> tuple:
    """(weights, Adam's moments, Adam's step count, the epoch's summed loss); the weights as
    Keras initialises a Dense layer: Glorot-uniform kernels, zero biases."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    weights = []
    for n_in, n_out in layer_shapes(params.model):
        key, draw = jax.random.split(key)
        bound = np.sqrt(6 / (n_in + n_out))
        kernel = jax.random.uniform(draw, (n_in, n_out), jnp.float32, -bound, bound)
        weights.append((kernel, jnp.zeros(n_out, jnp.float32)))
    zeros = jax.tree.map(jnp.zeros_like, weights)
    return weights, (zeros, zeros), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)


def logits(weights: list, x):
    import jax  # noqa: PLC0415

    for kernel, bias in weights[:-1]:
        x = jax.nn.relu(x @ kernel + bias)
    kernel, bias = weights[-1]
    return x @ kernel + bias


def cross_entropy(weights: list, x, y):
    """Softmax cross-entropy from logits, the mean over the batch."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    log_probabilities = jax.nn.log_softmax(logits(weights, x))
    return -jnp.take_along_axis(log_probabilities, y[:, None], axis=1).mean()


def make_step(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999):
    """One training step on the batch `order` picks out of (x, y): Adam as Keras computes it."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def step(state, x, y, order):
        weights, (m, v), count, loss_sum = state
        loss, grads = jax.value_and_grad(cross_entropy)(weights, x[order], y[order])
        count = count + 1
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), m, grads)
        v = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - beta_2), v, grads)
        power = count.astype(jnp.float32)
        rate = learning_rate * jnp.sqrt(1 - beta_2**power) / (1 - beta_1**power)
        weights = jax.tree.map(
            lambda w, m, v: w - rate * m / (jnp.sqrt(v) + KERAS_EPSILON), weights, m, v
        )
        return weights, (m, v), count, loss_sum + loss * len(order)

    return step


def scanned_epoch(step, batch_size: int):
    """An epoch in one call: lax.scan over the full batches of `order`, then the ragged rest as
    one more step. Shapes are static under jit, so the rest's size is known when it compiles."""
    from jax import lax  # noqa: PLC0415

    def epoch(state, x, y, order):
        full = len(order) // batch_size * batch_size
        batches = order[:full].reshape(-1, batch_size)
        state, _ = lax.scan(lambda state, batch: (step(state, x, y, batch), None), state, batches)
        if full < len(order):
            state = step(state, x, y, order[full:])
        return state

    return epoch


def validation(weights: list, x, y) -> tuple:
    """The loss and accuracy over the whole validation set, in one call."""
    import jax.numpy as jnp  # noqa: PLC0415

    return cross_entropy(weights, x, y), jnp.mean(logits(weights, x).argmax(axis=1) == y)
