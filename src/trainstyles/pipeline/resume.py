"""Resume points: what a training stage killed mid-run needs to end as if it had never stopped.

They live in .backup/<stage>/, outside the stage's DVC outs, because DVC deletes a stage's outs
before it runs the stage. Each completed epoch becomes a directory of its own, renamed into place
only when whole, so a kill at any instant leaves the previous point or the new one, never half of
one. A point made with other inputs is discarded, never resumed: the inputs are what DVC re-runs
the stage for (run_fingerprint), so an edit that cannot change the run keeps the point.

Each new point also rewrites the stage's curves, whole, from the history it records: what
`dvc plots show` draws while a stage trains is what a resume keeps, and a resumed run writes
the bytes an uninterrupted one does.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
from ruamel.yaml import YAML

from trainstyles import StageError
from trainstyles.pipeline.data import Split
from trainstyles.pipeline.outputs import epoch_rows, write_csv
from trainstyles.pipeline.params import Params

BACKUP_DIR = Path(".backup")
STATE_FILE = "state.json"
# The checkout this code runs from (DVC's stages put its src/ first on PYTHONPATH): its dvc.yaml
# names each stage's code deps, as paths from here.
CHECKOUT = Path(__file__).resolve().parents[3]


def run_fingerprint(stage: str, params: Params, *splits: Split, checkout: Path = CHECKOUT) -> str:
    """What DVC re-runs `stage` for, as dvc.yaml lists it: its own code deps (the files; its
    data deps are the `splits`, hashed as read), the params sections it reads, and the data.
    An edit to a tool, to another style's module or to another style's params keeps the point."""
    stages = YAML(typ="safe").load(checkout / "dvc.yaml")["stages"]
    if stage not in stages:
        raise StageError(f"dvc.yaml has no stage {stage!r}: its resume points have no inputs")
    values = params.model_dump(mode="json")
    sections = {name: values[name] for name in stages[stage].get("params", [])}
    digest = hashlib.sha256(json.dumps(sections, sort_keys=True).encode())
    for dep in stages[stage]["deps"]:
        if (checkout / dep).is_file():
            digest.update(dep.encode() + b"\0" + (checkout / dep).read_bytes())
    for split in splits:
        digest.update(np.ascontiguousarray(split.images))
        digest.update(np.ascontiguousarray(split.labels))
    return digest.hexdigest()


def latest_point(directory: Path) -> Path | None:
    """The latest whole resume point in `directory`: a point has its state file only once whole."""
    points = sorted(point.parent for point in directory.glob(f"epoch-*/{STATE_FILE}"))
    return points[-1] if points else None


def epochs_kept(directory: Path) -> int:
    """The epochs that the latest resume point on disk holds, 0 for none: where a re-run resumes."""
    point = latest_point(directory)
    return json.loads((point / STATE_FILE).read_text())["epochs_done"] if point else 0


class Backup:
    """The resume points of one training stage, the best model its checkpoint keeps, and where
    its `curves` go, if the stage publishes them as it trains."""

    def __init__(self, directory: Path, fingerprint: str, curves: Path | None = None):
        self.directory, self.curves = directory, curves
        self.best_model = directory / "best.keras"
        marker = directory / "fingerprint"
        if not marker.is_file() or marker.read_text() != fingerprint:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            marker.write_text(fingerprint)
        for unfinished in directory.glob(".staging.*"):
            shutil.rmtree(unfinished)
        self.point = latest_point(directory)
        self.state = json.loads((self.point / STATE_FILE).read_text()) if self.point else None

    @property
    def epochs_done(self) -> int:
        return self.state["epochs_done"] if self.state else 0

    @property
    def finished(self) -> bool:
        """Training ended (all epochs, or stopped early) but its outputs may not be written."""
        return bool(self.state and self.state["finished"])

    @contextmanager
    def new_point(self, epochs_done: int, finished: bool, state: dict) -> Iterator[Path]:
        """A directory for the block to fill; with `state`, it becomes the latest point, and
        its history the curves (every epoch so far, restored ones too: an appended row would
        be lost, or doubled, by a kill between the point and the curves)."""
        staging = self.directory / f".staging.{os.getpid()}"
        staging.mkdir()
        try:
            yield staging
            state = {"epochs_done": epochs_done, "finished": finished, **state}
            (staging / STATE_FILE).write_text(json.dumps(state, default=float))
            point = self.directory / f"epoch-{epochs_done:04d}"
            os.replace(staging, point)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self.point and self.point != point:
            shutil.rmtree(self.point)
        self.point, self.state = point, state
        if self.curves:
            write_csv(epoch_rows(state["history"]), self.curves)

    def remove(self) -> None:
        """Called once the stage's outputs are written: nothing is left to resume. Renamed aside
        first: removing in place takes a file at a time, and a kill or a Ctrl-C half-way could
        leave a point's state file beside only part of its weights."""
        removed = self.directory.with_name(f".{self.directory.name}.removed")
        shutil.rmtree(removed, ignore_errors=True)  # left by a run stopped while removing
        os.replace(self.directory, removed)
        shutil.rmtree(removed)

    def discard(self) -> None:
        """Called when training fails: nothing to resume, and no curves, as a failed stage
        leaves no output."""
        self.remove()
        if self.curves:
            self.curves.unlink(missing_ok=True)


class BackupAndResume(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, plus what it leaves out, in resume points.

    Keras restores weights, optimizer state and the epoch counter. A resumed run must also get
    back EarlyStopping's and ReduceLROnPlateau's counters and best values, ModelCheckpoint's
    best, and the history of the epochs before the kill, or it would end differently from an
    uninterrupted one. Keras rewrites its backup in place, so each epoch's copy goes into a
    resume point, and Keras' working copy is rebuilt from the latest point before training.
    """

    STATE: ClassVar = {
        keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
        keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
        keras.callbacks.ModelCheckpoint: ("best",),
    }

    def __init__(self, backup: Backup, history: keras.callbacks.History, zoo: list):
        working = backup.directory / "keras"
        shutil.rmtree(working, ignore_errors=True)
        if backup.point:
            shutil.copytree(backup.point / "keras", working)
        super().__init__(working, delete_checkpoint=False)
        self.backup, self.history = backup, history
        self.stateful = [callback for callback in zoo if type(callback) in self.STATE]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # weights, optimizer state and epoch from Keras' backup
        # After the zoo's own on_train_begin, which resets these counters for a new run.
        if state := self.backup.state:
            self.history.history = state["history"]
            for callback, saved in zip(self.stateful, state["callbacks"], strict=True):
                attributes = dict(saved)
                if best_weights := attributes.pop("best_weights", None):
                    with np.load(self.backup.point / best_weights) as arrays:
                        callback.best_weights = [arrays[name] for name in arrays.files]
                vars(callback).update(attributes)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        finished = self.model.stop_training or epoch + 1 == self.params["epochs"]
        callbacks = []
        for index, callback in enumerate(self.stateful):
            attributes = {name: getattr(callback, name) for name in self.STATE[type(callback)]}
            if getattr(callback, "best_weights", None) is not None:
                attributes["best_weights"] = f"best_weights_{index}.npz"
            callbacks.append(attributes)
        state = {"history": self.history.history, "callbacks": callbacks}
        with self.backup.new_point(epoch + 1, finished, state) as point:
            shutil.copytree(self.backup_dir, point / "keras")
            for callback, attributes in zip(self.stateful, callbacks, strict=True):
                if "best_weights" in attributes:
                    np.savez(point / attributes["best_weights"], *callback.best_weights)
