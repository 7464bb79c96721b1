"""The frame around each training style: seed, data in, timed training, outputs out."""

import shutil
import time
from collections.abc import Callable

import keras

from trainstyles.data import batches, load_split
from trainstyles.outputs import atomic_path, epoch_rows, style_metrics, write_csv, write_json
from trainstyles.params import load_params
from trainstyles.stage import LOGS_DIR, METRICS_DIR, MODELS_DIR, PLOTS_DIR, SPLIT_DIR

TrainFn = Callable[..., dict]


def train_style(style: str, train: TrainFn) -> str:
    """Train one style on data/split/{train,val} and write its model, metrics, curves and logs.

    The test split is deliberately not read here: no training decision may see it.
    """
    params = load_params()
    keras.utils.set_random_seed(params.seed)
    train_split, val_split = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
    train_batches = batches(train_split, params.train.batch_size, shuffle_seed=params.seed)
    val_batches = batches(val_split, params.train.batch_size)
    model_path, log_dir = MODELS_DIR / f"{style}.keras", LOGS_DIR / style
    shutil.rmtree(log_dir, ignore_errors=True)  # as DVC does: no event files of an older run

    with atomic_path(model_path) as checkpoint:
        start = time.perf_counter()
        history = train(params, train_batches, val_batches, checkpoint, log_dir)
        metrics = style_metrics(history, time.perf_counter() - start, len(train_split))
    write_json(metrics, METRICS_DIR / f"{style}.json")
    write_csv(epoch_rows(history), PLOTS_DIR / f"{style}.csv")
    return (
        f"trained on {len(train_split)} images, validated on {len(val_split)}; "
        f"wrote {model_path} (epoch {metrics['best_epoch']}/{metrics['epochs_run']}, "
        f"val_accuracy {metrics['best_val_accuracy']:.4f}), metrics, plots and {log_dir}/"
    )
