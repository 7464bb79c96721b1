"""Writing what DVC caches: every file appears whole under its final name, or not at all."""

import csv
import json
import math
import os
import shutil
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from trainstyles import StageError

History = Mapping[str, Sequence[float]]
# A style whose best validation accuracy is within this of chance (1 / classes) did not learn.
CHANCE_MARGIN = 0.05


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
    except OSError as error:
        raise write_error(final, error) from None
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """A directory beside `final` to fill; it replaces `final` only if the block completes.

    For outputs that are directories (datasets, confusion data): a crash or a kill leaves the
    previous directory, or for an instant none, but never a mix of old and new files, nor part
    of either. The old directory is renamed aside before it is removed: removing it in place
    takes a file at a time, and a kill half-way would leave part of it under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp, old = final.with_name(f".{final.name}.tmp"), final.with_name(f".{final.name}.old")
    for left in (temp, old):
        shutil.rmtree(left, ignore_errors=True)  # left by a killed run
    temp.mkdir()
    try:
        yield temp
        if final.exists():
            os.replace(final, old)
        os.replace(temp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise write_error(final, error) from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def write_error(final: Path, error: OSError) -> StageError:
    """A full disk, a size limit, a permission: one line naming the output (numpy's own
    message for a short write names neither file nor cause)."""
    return StageError(f"cannot write {final}: {error.strerror or error}; nothing written")


def write_json(data: Mapping, path: Path) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(rows: Sequence[Mapping], path: Path) -> None:
    with atomic_path(path) as temp, temp.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def publish_keras(source: Path, final: Path) -> None:
    """Copy a `.keras` archive to `final` with bytes that depend on the model alone.

    Keras stamps each save with the time (zip entries, metadata.json's `date_saved`) and names
    objects shared in the config by their memory address (`shared_object_id`). Without the
    stamps, and with the addresses renumbered in order of appearance, equal models give equal
    files, so `dvc.lock` does not change when a re-run trains the same weights.
    """
    with (
        zipfile.ZipFile(source) as archive,
        atomic_path(final) as temp,
        zipfile.ZipFile(temp, "w") as published,
    ):
        for entry in archive.infolist():
            content = archive.read(entry)
            if entry.filename == "metadata.json":
                metadata = json.loads(content)
                del metadata["date_saved"]
                content = json.dumps(metadata).encode()
            elif entry.filename == "config.json":
                content = json.dumps(renumber_shared_objects(json.loads(content))).encode()
            published.writestr(zipfile.ZipInfo(entry.filename), content)


def renumber_shared_objects(config, numbers: dict | None = None):
    """`config` with each `shared_object_id` replaced by 1, 2, … in order of first appearance."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, list):
        return [renumber_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    return {
        key: numbers.setdefault(value, len(numbers) + 1)
        if key == "shared_object_id"
        else renumber_shared_objects(value, numbers)
        for key, value in config.items()
    }


def epoch_rows(history: History) -> list[dict]:
    """One row per epoch (numbered from 1, as Keras prints them) for `dvc plots`."""
    epochs = len(history["val_accuracy"])
    return [
        {"epoch": epoch + 1, **{key: values[epoch] for key, values in history.items()}}
        for epoch in range(epochs)
    ]


def read_history(path: Path) -> dict[str, list[float]]:
    """The history that `epoch_rows` wrote to `path`: CSV keeps floats exact (shortest repr)."""
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"}


def style_metrics(history: History) -> dict:
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
    }
    if "grad_norm" in history:
        metrics |= {
            "grad_norm_first": history["grad_norm"][0],
            "grad_norm_last": history["grad_norm"][-1],
        }
    if not all(math.isfinite(value) for value in metrics.values()):
        raise StageError(f"training diverged: non-finite metrics {metrics}")
    return metrics


def at_chance(metrics: Mapping[str, float], num_classes: int) -> bool:
    """Whether a run's best validation accuracy is no better than guessing, give or take
    CHANCE_MARGIN: a learning rate far too high trains to finite figures that mean nothing."""
    return metrics["best_val_accuracy"] <= 1 / num_classes + CHANCE_MARGIN
