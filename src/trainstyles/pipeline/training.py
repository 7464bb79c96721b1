"""The trainer around each style's train(): determinism, data in, timed training, outputs out."""

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import keras
import tensorflow as tf

from trainstyles import StageError, StageWarning
from trainstyles.pipeline.callbacks import LogSettings, StartEpoch, TerminateOnNaN, fit_callbacks
from trainstyles.pipeline.data import EpochBatches, Split, batches, load_split
from trainstyles.pipeline.determinism import deterministic_kernels, uses_xla
from trainstyles.pipeline.distribute import distribution, is_chief
from trainstyles.pipeline.gpu import use_devices
from trainstyles.pipeline.loop import progress_verbosity
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.outputs import (
    CHANCE_MARGIN,
    at_chance,
    epoch_rows,
    publish_keras,
    style_metrics,
    write_csv,
    write_json,
)
from trainstyles.pipeline.params import (
    CallbackParams,
    DistributeParams,
    Params,
)
from trainstyles.pipeline.resume import (
    BACKUP_DIR,
    Backup,
    BackupAndResume,
    epochs_kept,
    run_fingerprint,
)
from trainstyles.pipeline.stage import (
    LOGS_DIR,
    MACHINE_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    SPLIT_DIR,
    deliver_interrupts,
    stage_record,
)
from trainstyles.pipeline.styles import Run, style_module

REPRO = "`dvc repro`"  # what an interrupted trainer tells its user to run next

TrainFn = Callable[[Params, Run], tuple[keras.Model, dict]]


def train_on(
    train: TrainFn,
    params: Params,
    train_split: Split,
    val_split: Split,
    backup: Backup,
    log_dir: Path,
    epoch_batches: type[EpochBatches] = EpochBatches,
) -> tuple[keras.Model, dict]:
    """One style's training, from the seed on: the part the equivalence proof repeats (and the
    bench, with `epoch_batches` noting when each epoch starts).

    The model, optimizer and metrics are made under the strategy's scope, so they are mirrored
    on every replica; the global batch stays `train.batch_size`, split among the replicas.
    """
    # First: TensorFlow fixes its thread pools and devices when it starts.
    on_gpu = bool(tf.config.get_visible_devices("GPU"))
    xla = uses_xla(params.train.jit_compile, on_gpu, params.distribute.strategy != "none")
    deterministic_kernels(params.train.intra_op_threads, xla=xla)
    # The styles read a plain switch: compile() and the raw loop's tf.function take a bool.
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"jit_compile": xla})}
    )
    strategy = distribution(params.distribute)
    if params.distribute.strategy != "none":
        print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replicas", flush=True)
    keras.utils.set_random_seed(params.seed)
    train_batches = epoch_batches(train_split, params.train.batch_size, params.seed)

    run = Run(
        train_batches=train_batches,
        val_batches=batches(val_split, params.train.batch_size),
        backup=backup,
        log_dir=log_dir,
        verbose=progress_verbosity(),
        fit_callbacks=partial(callbacks_around_zoo, train_batches, backup, log_dir),
    )
    with strategy.scope():
        return train(params, run)


def callbacks_around_zoo(
    train_batches: EpochBatches,
    backup: Backup,
    log_dir: Path,
    zoo_params: CallbackParams,
    history: keras.callbacks.History,
    **settings: float,
) -> list[keras.callbacks.Callback]:
    """fit()'s callbacks (`Run.fit_callbacks`, its first three arguments bound): the zoo that
    `zoo_params` names, and around it each epoch's batch order, a stop on NaN, the `settings`
    logged each epoch, History, and the resume points."""
    zoo = fit_callbacks(zoo_params, backup.best_model, log_dir)
    # Order matters: the zoo updates on each epoch's end before the backup records it.
    return [
        StartEpoch(train_batches),
        TerminateOnNaN(),
        LogSettings(**settings),
        *zoo,
        history,
        BackupAndResume(backup, history, zoo),
    ]


def where_to_write(style: str, params: DistributeParams) -> tuple[Path, Path, Path | None]:
    """Where a stage writes its outputs and its resume points, and a directory to remove after.

    Under multi_worker every worker runs the same stage and takes part in every step and every
    save (saving reads variables that all workers hold), but only the chief's files are the
    stage's outputs: the other workers write theirs to a temporary directory, as Keras' guide
    has it. No worker resumes: all would have to resume from the same epoch.
    """
    if params.strategy != "multi_worker":
        return Path(), BACKUP_DIR / style, None
    scratch = Path(tempfile.mkdtemp(prefix=f"{style}-"))
    return Path() if is_chief(params) else scratch, scratch / BACKUP_DIR / style, scratch


def interrupted(backup: Backup | None, backup_dir: Path, epochs: int) -> str:
    """What an interrupted trainer says: where it stopped, and the resume point a re-run starts
    from. That point is read from disk: the interrupt may have come before or after the rename
    that publishes an epoch's point (resume.Backup.new_point)."""
    if backup is None:
        when = "before training began"
    elif backup.finished:
        when = "after training, while writing its outputs"
    else:
        when = f"in epoch {backup.epochs_done + 1}/{epochs}"
    if kept := epochs_kept(backup_dir):
        return (
            f"interrupted {when}; kept the resume point after epoch {kept}: {REPRO} resumes there"
        )
    return f"interrupted {when}; no resume point: {REPRO} starts again from epoch 1"


def train_style(style: str, params: Params, train: TrainFn | None = None) -> str:
    """Train one style (stages/train.py has checked its name and read `params`) on
    data/split/{train,val} and write its model, curves, timing and logs. `train` stands in for
    the style module's train() (the distribution tests keep weights).

    The test split is deliberately not read here: no training decision may see it. The curves
    (one row per epoch) are the style's record: `evaluate` sums them up beside the test score,
    in one metrics file per style. A run that was killed resumes from its last completed epoch
    (see resume.py); one interrupted (Ctrl-C, SIGTERM) says in which epoch, and from where.
    """
    train = train or style_module(style).train
    out, backup_dir, scratch = where_to_write(style, params.distribute)
    backup = None
    try:
        deliver_interrupts()  # one held since the trainer started is raised here
        devices = use_devices(params.train.device)
        if params.distribute.strategy == "none":
            devices = devices[:1]  # TensorFlow places every op on its first device
        print(f"{style}: training on {', '.join(devices)}", flush=True)
        train_split, val_split = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
        # Each epoch's resume point rewrites the curves: `dvc plots show` draws a run as it trains.
        backup = Backup(
            backup_dir,
            run_fingerprint(style, params, train_split, val_split),
            curves=out / PLOTS_DIR / f"{style}.csv",
        )
        resumed_after, log_dir = backup.epochs_done, out / LOGS_DIR / style
        if not resumed_after:
            shutil.rmtree(log_dir, ignore_errors=True)  # no event files of an older run

        start = time.perf_counter()
        if backup.finished:  # killed after training, while writing outputs
            history = backup.state["history"]
        else:
            try:
                _, history = train_on(train, params, train_split, val_split, backup, log_dir)
            except StageError:
                backup.discard()  # it would only lead to the same failure again
                raise
        seconds = time.perf_counter() - start

        metrics = style_metrics(history)  # refuses a run whose figures are not finite
        model_path = out / MODELS_DIR / f"{style}.keras"
        publish_keras(backup.best_model, model_path)
        write_csv(epoch_rows(history), backup.curves)
        machine = fingerprint(params.train.intra_op_threads, devices)
        write_json(machine, out / MACHINE_DIR / f"{style}.json")
        epochs_timed = metrics["epochs_run"] - resumed_after
        # Beside the stage's wall time and memory, in the record run_stage writes on success.
        record = stage_record()
        record.figures |= {
            "train_seconds": round(seconds, 2),
            "epochs_timed": epochs_timed,
            "samples_per_second": round(epochs_timed * len(train_split) / seconds)
            if epochs_timed
            else 0,
        }
        if out == scratch:
            record.path = None  # not the chief: what this worker took is not the stage's record
        backup.remove()
        if scratch:
            shutil.rmtree(scratch)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (stage.interrupt_on_signals)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)  # a worker's resume points: none resumes
        message = interrupted(backup, backup_dir, getattr(params, style).epochs)
        raise type(interrupt)(message) from None
    if at_chance(metrics, params.model.num_classes):
        chance = 1 / params.model.num_classes
        warnings.warn(
            f"the model did not learn: its best val_accuracy {metrics['best_val_accuracy']:.4f} "
            f"is within {CHANCE_MARGIN} of chance ({chance:.4f} for {params.model.num_classes} "
            "classes); check train.learning_rate and the data",
            StageWarning,
            stacklevel=1,
        )
    resumed = f", resumed after epoch {resumed_after}" if resumed_after else ""
    trained = f"trained on {len(train_split)} images, validated on {len(val_split)}{resumed}; "
    if out == scratch:
        return trained + "not the chief: its outputs were temporary, the chief's are the stage's"
    return (
        f"{trained}wrote {model_path} (epoch {metrics['best_epoch']}/{metrics['epochs_run']}, "
        f"val_accuracy {metrics['best_val_accuracy']:.4f}), {PLOTS_DIR}/{style}.csv, "
        f"timing and {log_dir}/"
    )
