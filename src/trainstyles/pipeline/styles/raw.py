"""train_raw: our own loop with tf.GradientTape; everything fit() did is written here."""

import keras
import tensorflow as tf

from trainstyles.pipeline.loop import (
    EpochSummaries,
    ResumePoint,
    distributed,
    on_every_replica,
    several_steps,
)
from trainstyles.pipeline.model import build_model, loss_function
from trainstyles.pipeline.params import Params
from trainstyles.pipeline.replicas import share_of_mean_loss, track_mean_loss
from trainstyles.pipeline.styles import Run

# The equivalence proof: with the same epochs, the same weights as fit(), to the bit.
SAME_MATH_AS = "train_fit"


def train(params: Params, run: Run) -> tuple[keras.Model, dict]:
    model = build_model(params.model)
    optimizer = keras.optimizers.Adam(params.train.learning_rate)
    loss_fn = loss_function(reduction="none")  # per example: share_of_mean_loss averages them
    train_loss, val_loss = keras.metrics.Mean(name="loss"), keras.metrics.Mean(name="val_loss")
    train_acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    val_acc = keras.metrics.SparseCategoricalAccuracy(name="val_accuracy")
    epoch_metrics = (train_loss, train_acc, val_loss, val_acc)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss, batch_size = share_of_mean_loss(loss_fn, y, logits)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        track_mean_loss(train_loss, loss, batch_size)
        train_acc.update_state(y, logits)

    def val_step(x, y):
        logits = model(x, training=False)
        track_mean_loss(val_loss, *share_of_mean_loss(loss_fn, y, logits))
        val_acc.update_state(y, logits)

    jit_compile, per_call = params.train.jit_compile, params.train.steps_per_execution
    train_epoch = several_steps(
        on_every_replica(train_step, jit_compile), run.train_batches, train_loss, per_call
    )
    val_step, val_batches = on_every_replica(val_step, jit_compile), distributed(run.val_batches)
    resume = ResumePoint(run.backup, model, optimizer)  # restored, if a run was killed
    summaries = EpochSummaries(run.log_dir)

    epochs = params.train_raw.epochs
    for epoch in range(resume.epochs_done, epochs):
        print(f"Epoch {epoch + 1}/{epochs}")
        run.train_batches.start_epoch(
            epoch
        )  # this epoch's order: a function of (seed, epoch) alone
        # Metrics accumulate until reset: without this, epoch 2 would average in epoch 1.
        for metric in epoch_metrics:
            metric.reset_state()
        steps, names = run.train_batches.steps, [metric.name for metric in epoch_metrics]
        progbar = keras.utils.Progbar(steps, verbose=run.verbose, stateful_metrics=names)
        for step in train_epoch(epoch):
            progress = [("loss", train_loss.result()), ("accuracy", train_acc.result())]
            progbar.update(step, progress, finalize=False)
        for x, y in val_batches:
            val_step(x, y)
        logs = {metric.name: float(metric.result()) for metric in epoch_metrics}
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        progbar.update(steps, list(logs.items()), finalize=True)
        for name, value in logs.items():
            resume.history[name].append(value)
        summaries.write(epoch, logs)
        # The hand-rolled ModelCheckpoint(save_best_only=True, monitor="val_accuracy").
        if logs["val_accuracy"] > resume.best_val_accuracy:
            resume.best_val_accuracy = logs["val_accuracy"]
            model.save(run.backup.best_model)
        resume.save(epoch + 1, finished=epoch + 1 == epochs)
    summaries.close()
    return model, dict(resume.history)
