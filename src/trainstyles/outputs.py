"""Writing what DVC caches: every file appears whole under its final name, or not at all."""

import csv
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from trainstyles import StageError

History = Mapping[str, Sequence[float]]


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A path beside `final` to write to; it becomes `final` only if the block completes.

    A crash or an error leaves no partial file under the final name. The temporary name keeps
    the suffix, as Keras and numpy insist on theirs, and does not exist until the block writes
    it, so a block that writes nothing fails instead of publishing an empty file.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")
    try:
        yield temp
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def write_json(data: Mapping, path: Path) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(rows: Sequence[Mapping], path: Path) -> None:
    with atomic_path(path) as temp, temp.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def epoch_rows(history: History) -> list[dict]:
    """One row per epoch (numbered from 1, as Keras prints them) for `dvc plots`."""
    epochs = len(history["val_accuracy"])
    return [
        {"epoch": epoch + 1, **{key: values[epoch] for key, values in history.items()}}
        for epoch in range(epochs)
    ]


def style_metrics(history: History, train_seconds: float, train_samples: int) -> dict:
    """The flat metrics every style reports under the same keys, plus `grad_norm_*` where logged.

    The best epoch is the one with the highest validation accuracy: the one the checkpoint kept.
    """
    val_accuracy, val_loss = history["val_accuracy"], history["val_loss"]
    best = max(range(len(val_accuracy)), key=val_accuracy.__getitem__)  # first of equals, as saved
    metrics = {
        "loss": history["loss"][-1],
        "accuracy": history["accuracy"][-1],
        "val_loss": val_loss[-1],
        "val_accuracy": val_accuracy[-1],
        "best_val_loss": min(val_loss),
        "best_val_accuracy": val_accuracy[best],
        "best_epoch": best + 1,
        "epochs_run": len(val_accuracy),
        "train_seconds": round(train_seconds, 2),
        "samples_per_second": round(len(val_accuracy) * train_samples / train_seconds),
    }
    if "grad_norm" in history:
        metrics |= {
            "grad_norm_first": history["grad_norm"][0],
            "grad_norm_last": history["grad_norm"][-1],
        }
    if not all(math.isfinite(value) for value in metrics.values()):
        raise StageError(f"training diverged: non-finite metrics {metrics}")
    return metrics
