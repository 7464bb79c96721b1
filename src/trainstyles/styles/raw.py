"""Style 3, train_raw: our own loop with tf.GradientTape; everything fit() did is written here."""

import math
from collections import defaultdict
from pathlib import Path

import keras
import tensorflow as tf

from trainstyles.callbacks import divergence, progress_verbosity
from trainstyles.data import EpochBatches
from trainstyles.model import build_model, loss_function
from trainstyles.params import Params, TrainParams
from trainstyles.resume import Backup


def several_steps(train_step, train_loss: keras.metrics.Mean, per_call: int):
    """`train_step` run up to `per_call` times in one call, as fit() runs steps_per_execution:
    one Python round trip (and one read of the loss) per `per_call` batches instead of per batch.
    It stops after the first step whose running loss is not finite, and returns how many steps
    ran, so a divergence is still reported at its exact step."""

    @tf.function
    def train_steps(iterator, count):
        done = tf.constant(0)
        for _ in tf.range(count):
            train_step(*next(iterator))
            done += 1
            if not tf.math.is_finite(train_loss.result()):
                break
        return done

    def run(iterator, remaining: int) -> int:
        # A tensor count: one trace, whatever the length of an epoch's last call.
        return int(train_steps(iterator, tf.constant(min(per_call, remaining))))

    return run


def train(
    params: Params, train_batches: EpochBatches, val_batches, backup: Backup, log_dir: Path
) -> tuple[keras.Model, dict]:
    # Under the strategy's scope (training.train_on): what is made here is on every replica.
    strategy = tf.distribute.get_strategy()
    model = build_model(params.model)
    optimizer = keras.optimizers.Adam(params.train.learning_rate)
    train_loss, val_loss = keras.metrics.Mean(name="loss"), keras.metrics.Mean(name="val_loss")
    train_acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    val_acc = keras.metrics.SparseCategoricalAccuracy(name="val_accuracy")
    epoch_metrics = (train_loss, train_acc, val_loss, val_acc)
    train_step, val_step = distributed_steps(model, optimizer, epoch_metrics, params.train)
    train_steps = several_steps(train_step, train_loss, params.train.steps_per_execution)
    # Each global batch split among the replicas: the same global batches as a single device's.
    train_dataset = strategy.experimental_distribute_dataset(train_batches.dataset)
    val_dataset = strategy.experimental_distribute_dataset(val_batches)

    # The same tags and run names as Keras' TensorBoard callback, so all styles overlay.
    writers = {
        run: tf.summary.create_file_writer(str(log_dir / run)) for run in ("train", "validation")
    }
    # The resume point: weights, the optimizer's moments and step count, and how far we got.
    optimizer.build(model.trainable_variables)
    resume = tf.train.Checkpoint(model=model, optimizer=optimizer)
    history, best_val_accuracy = defaultdict(list), -1.0
    if backup.state:
        resume.read(str(backup.point / "checkpoint")).assert_consumed()
        history.update(backup.state["history"])
        best_val_accuracy = backup.state["best_val_accuracy"]

    epochs = params.train_raw.epochs
    for epoch in range(backup.epochs_done, epochs):
        print(f"Epoch {epoch + 1}/{epochs}")
        train_batches.start_epoch(epoch)  # this epoch's order: a function of (seed, epoch) alone
        # Metrics accumulate until reset: without this, epoch 2 would average in epoch 1.
        for metric in epoch_metrics:
            metric.reset_state()
        progbar = keras.utils.Progbar(
            train_batches.steps,
            verbose=progress_verbosity(),
            stateful_metrics=[m.name for m in epoch_metrics],
        )
        batches, step = iter(train_dataset), 0
        while step < train_batches.steps:
            step += train_steps(batches, train_batches.steps - step)
            if not math.isfinite(train_loss.result()):  # what TerminateOnNaN does for fit()
                raise divergence(train_loss.result(), epoch, step)
            progbar.update(
                step,
                [("loss", train_loss.result()), ("accuracy", train_acc.result())],
                finalize=False,
            )
        for x, y in val_dataset:
            val_step(x, y)
        logs = {
            **{metric.name: float(metric.result()) for metric in epoch_metrics},
            # Constant here (no scheduler); read as numpy, a mirrored variable has no float().
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
        }
        progbar.update(train_batches.steps, list(logs.items()), finalize=True)

        for name, value in logs.items():
            history[name].append(value)
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with writers[run].as_default():
                tf.summary.scalar(f"epoch_{tag}", value, step=epoch)
        # The hand-rolled ModelCheckpoint(save_best_only=True, monitor="val_accuracy").
        if logs["val_accuracy"] > best_val_accuracy:
            best_val_accuracy = logs["val_accuracy"]
            model.save(backup.best_model)
        state = {"history": history, "best_val_accuracy": best_val_accuracy}
        with backup.new_point(epoch + 1, epoch + 1 == epochs, state) as point:
            resume.write(str(point / "checkpoint"))
    for writer in writers.values():
        writer.close()
    return model, dict(history)


def distributed_steps(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    metrics: tuple,
    train_params: TrainParams,
):
    """The training and the validation step, each run on every replica by `strategy.run`; under
    TensorFlow's default strategy (distribute.strategy none) that is once, as written."""
    strategy = tf.distribute.get_strategy()
    loss_fn = loss_function(reduction="none")  # per example: replica_loss averages them
    train_loss, train_acc, val_loss, val_acc = metrics

    def replica_loss(y, logits):
        """This replica's share of the mean loss over the global batch, of which it holds a
        slice. The optimizer sums the replicas' gradients, so the shares must sum to that mean;
        counting the actual global batch, not the nominal one, keeps the short last batch a
        plain mean too, as in a single-device run."""
        global_batch_size = tf.distribute.get_replica_context().all_reduce("sum", tf.shape(y)[0])
        loss = tf.nn.compute_average_loss(loss_fn(y, logits), global_batch_size=global_batch_size)
        return loss, global_batch_size

    def track_loss(metric, loss, global_batch_size):
        # Every replica adds its share times their number, weighted by the global batch: summed
        # over replicas, a per-sample mean, as fit() reports it (Keras unscales the same way).
        metric.update_state(loss * strategy.num_replicas_in_sync, sample_weight=global_batch_size)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss, global_batch_size = replica_loss(y, logits)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)  # sums the replicas' gradients
        track_loss(train_loss, loss, global_batch_size)
        train_acc.update_state(y, logits)

    def val_step(x, y):
        logits = model(x, training=False)
        track_loss(val_loss, *replica_loss(y, logits))
        val_acc.update_state(y, logits)

    # tf.function traces each step into a graph once; eager Python per batch would be far slower.
    @tf.function(jit_compile=train_params.jit_compile)
    def distributed_train_step(x, y):
        strategy.run(train_step, args=(x, y))

    @tf.function(jit_compile=train_params.jit_compile)
    def distributed_val_step(x, y):
        strategy.run(val_step, args=(x, y))

    return distributed_train_step, distributed_val_step
