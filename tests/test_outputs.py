import json
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from trainstyles import StageError
from trainstyles.pipeline.outputs import (
    atomic_dir,
    atomic_path,
    epoch_rows,
    publish_keras,
    read_history,
    renumber_shared_objects,
    style_metrics,
    write_csv,
    write_json,
)

HISTORY = {
    "loss": [0.6, 0.4, 0.3],
    "accuracy": [0.8, 0.85, 0.9],
    "val_loss": [0.5, 0.35, 0.4],
    "val_accuracy": [0.82, 0.88, 0.88],
    "grad_norm": [1.7, 1.2, 0.9],
}


def test_style_metrics_are_flat_and_name_the_checkpointed_epoch():
    metrics = style_metrics(HISTORY)
    assert metrics == {
        "loss": 0.3,
        "accuracy": 0.9,
        "val_loss": 0.4,
        "val_accuracy": 0.88,
        "best_val_loss": 0.35,
        "best_val_accuracy": 0.88,
        "best_epoch": 2,  # the first of two equal val_accuracy values: save_best_only keeps it
        "epochs_run": 3,
        "grad_norm_first": 1.7,
        "grad_norm_last": 0.9,
    }


def test_diverged_training_is_an_error_not_a_metrics_file():
    with pytest.raises(StageError, match="non-finite"):
        style_metrics({**HISTORY, "loss": [0.6, 0.4, float("nan")]})


def test_epoch_rows_number_epochs_from_one(tmp_path):
    rows = epoch_rows(HISTORY)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[2]["grad_norm"] == 0.9
    write_csv(rows, tmp_path / "curves.csv")
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,grad_norm"
    assert len(lines) == 4


def test_the_curves_read_back_as_the_exact_history(tmp_path):
    """evaluate sums a style up from its curves: the CSV must hold every float to the bit."""
    history = {**HISTORY, "loss": [0.1 + 0.2, 1 / 3, float(np.float32(0.35))]}
    write_csv(epoch_rows(history), tmp_path / "curves.csv")
    assert read_history(tmp_path / "curves.csv") == history


def test_atomic_path_publishes_only_complete_files(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text('{"a": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_atomic_path_refuses_to_publish_nothing(tmp_path):
    with pytest.raises(StageError, match="cannot write"), atomic_path(tmp_path / "model.keras"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_published_keras_files_of_equal_models_are_equal_bytes_and_reload(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "first.keras")
    time.sleep(1.1)  # Keras stamps saves to the second
    model.save(tmp_path / "second.keras")
    assert (tmp_path / "first.keras").read_bytes() != (tmp_path / "second.keras").read_bytes()

    for name in ("first", "second"):
        publish_keras(tmp_path / f"{name}.keras", tmp_path / "published" / f"{name}.keras")
    first, second = (tmp_path / "published" / f"{n}.keras" for n in ("first", "second"))
    assert first.read_bytes() == second.read_bytes()
    assert "date_saved" not in zipfile.ZipFile(first).read("metadata.json").decode()
    reloaded = keras.models.load_model(first)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(reloaded.get_weights(), model.get_weights(), strict=True)
    )


def test_shared_objects_are_renumbered_consistently_in_order_of_appearance():
    config = {"a": {"shared_object_id": 140229}, "b": [{"shared_object_id": 99}, {"x": 1}],
              "c": {"shared_object_id": 140229}}  # fmt: skip
    assert renumber_shared_objects(config) == {
        "a": {"shared_object_id": 1},
        "b": [{"shared_object_id": 2}, {"x": 1}],
        "c": {"shared_object_id": 1},
    }


def test_atomic_dir_replaces_a_directory_whole_or_leaves_the_old_one(tmp_path):
    target = tmp_path / "prepared"
    with atomic_dir(target) as temp:
        (temp / "old.npy").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as temp:
        (temp / "new.npy").write_text("new")
        raise RuntimeError("killed half-way")
    assert [path.name for path in tmp_path.iterdir()] == ["prepared"]
    assert [path.name for path in target.iterdir()] == ["old.npy"]
    with atomic_dir(target) as temp:  # completed over an existing directory: replaced, not merged
        (temp / "new.npy").write_text("new")
    assert [path.name for path in tmp_path.iterdir()] == ["prepared"]
    assert [path.name for path in target.iterdir()] == ["new.npy"]
    assert (target / "new.npy").read_text() == "new"


def test_a_kill_while_the_old_directory_is_removed_leaves_the_new_one_whole(tmp_path, monkeypatch):
    """Removing a directory takes a file at a time: a kill then must not leave part of the old
    one under the final name (measured: a SIGKILL of `split` did, before it was renamed aside)."""
    target = tmp_path / "split"
    with atomic_dir(target) as temp:
        for name in ("a.npy", "b.npy", "c.npy"):
            (temp / name).write_text("old")
    removing = shutil.rmtree

    def killed_half_way(path, *args, **kwargs):
        if Path(path).name == ".split.old" and Path(path).exists():
            next(Path(path).iterdir()).unlink()  # one file gone, then the kill
            raise KeyboardInterrupt
        removing(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as temp:
        (temp / "new.npy").write_text("new")
    assert [path.name for path in target.iterdir()] == ["new.npy"]
