"""What a hand-written loop needs besides the tutorial's lines, kept out of styles/raw.py so
that the loop reads like the tutorial: steps on every replica, several steps per call, the
resume point, and TensorBoard's files."""

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import tensorflow as tf

from trainstyles import StageError
from trainstyles.pipeline.data import EpochBatches


def on_every_replica(step: Callable, jit_compile: bool) -> Callable:
    """`step(x, y)` traced into a graph once (eager Python per batch would be far slower) and
    run on every replica by `strategy.run`; under the default strategy that is once."""
    strategy = tf.distribute.get_strategy()

    @tf.function(jit_compile=jit_compile)
    def distributed_step(x, y):
        strategy.run(step, args=(x, y))

    return distributed_step


def distributed(dataset: tf.data.Dataset) -> tf.distribute.DistributedDataset:
    """Each global batch split among the replicas: the same global batches as one device's."""
    return tf.distribute.get_strategy().experimental_distribute_dataset(dataset)


def several_steps(
    train_step: Callable, batches: EpochBatches, loss: keras.metrics.Mean, per_call: int
) -> Callable[[int], Iterator[int]]:
    """Epochs of `train_step` over `batches`, run up to `per_call` times per call, as fit() runs
    steps_per_execution: one Python round trip (and one read of the loss) per `per_call` batches
    instead of per batch. Epoch `number` yields the count of steps done after each call. A call
    stops after the first step whose running loss is not finite, and the epoch then fails with
    the exact step of the divergence."""
    dataset, steps = distributed(batches.dataset), batches.steps

    @tf.function
    def train_steps(iterator, count):
        done = tf.constant(0)
        for _ in tf.range(count):
            train_step(*next(iterator))
            done += 1
            if not tf.math.is_finite(loss.result()):
                break
        return done

    def epoch(number: int) -> Iterator[int]:
        iterator, done = iter(dataset), 0
        while done < steps:
            # A tensor count: one trace, whatever the length of an epoch's last call.
            done += int(train_steps(iterator, tf.constant(min(per_call, steps - done))))
            if not math.isfinite(loss.result()):  # what TerminateOnNaN does for fit()
                raise divergence(loss.result(), number, done)
            yield done

    return epoch


class ResumePoint:
    """The raw loop's resume point in `backup`: the weights, the optimizer's moments and step
    count, the history and the best val_accuracy so far, restored on creation if a point exists."""

    def __init__(self, backup, model: keras.Model, optimizer: keras.optimizers.Optimizer):
        self.backup = backup
        optimizer.build(model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        self.history, self.best_val_accuracy = defaultdict(list), -1.0
        if backup.state:
            self.checkpoint.read(str(backup.point / "checkpoint")).assert_consumed()
            self.history.update(backup.state["history"])
            self.best_val_accuracy = backup.state["best_val_accuracy"]
        self.epochs_done = backup.epochs_done

    def save(self, epochs_done: int, finished: bool) -> None:
        state = {"history": self.history, "best_val_accuracy": self.best_val_accuracy}
        with self.backup.new_point(epochs_done, finished, state) as point:
            self.checkpoint.write(str(point / "checkpoint"))


class EpochSummaries:
    """Each epoch's figures as TensorBoard scalars, with the tags and run names of Keras'
    TensorBoard callback, so that every style's runs overlay."""

    def __init__(self, log_dir: Path):
        self.writers = {
            run: tf.summary.create_file_writer(str(log_dir / run))
            for run in ("train", "validation")
        }

    def write(self, epoch: int, logs: dict) -> None:
        for name, value in logs.items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with self.writers[run].as_default():
                tf.summary.scalar(f"epoch_{tag}", value, step=epoch)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def divergence(loss: float, epoch: int, step: int) -> StageError:
    """The stage's error when the loss stops being finite (fit()'s TerminateOnNaN raises it too)."""
    return StageError(
        f"training diverged: loss is {float(loss)} at epoch {epoch + 1}, step {step}; "
        "no model or metrics written"
    )


def progress_verbosity() -> int:
    """Keras' live progress bar on a terminal; one line per epoch in logs (DVC, CI) instead
    of thousands of carriage-return updates."""
    return 1 if sys.stdout.isatty() else 2
