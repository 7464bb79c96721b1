import json

import pytest

from trainstyles import StageError
from trainstyles.outputs import atomic_path, epoch_rows, style_metrics, write_csv, write_json

HISTORY = {
    "loss": [0.6, 0.4, 0.3],
    "accuracy": [0.8, 0.85, 0.9],
    "val_loss": [0.5, 0.35, 0.4],
    "val_accuracy": [0.82, 0.88, 0.88],
    "grad_norm": [1.7, 1.2, 0.9],
}


def test_style_metrics_are_flat_and_name_the_checkpointed_epoch():
    metrics = style_metrics(HISTORY, train_seconds=6.0, train_samples=1000)
    assert metrics == {
        "loss": 0.3,
        "accuracy": 0.9,
        "val_loss": 0.4,
        "val_accuracy": 0.88,
        "best_val_loss": 0.35,
        "best_val_accuracy": 0.88,
        "best_epoch": 2,  # the first of two equal val_accuracy values: save_best_only keeps it
        "epochs_run": 3,
        "train_seconds": 6.0,
        "samples_per_second": 500,
        "grad_norm_first": 1.7,
        "grad_norm_last": 0.9,
    }


def test_diverged_training_is_an_error_not_a_metrics_file():
    with pytest.raises(StageError, match="non-finite"):
        style_metrics({**HISTORY, "loss": [0.6, 0.4, float("nan")]}, 1.0, 10)


def test_epoch_rows_number_epochs_from_one(tmp_path):
    rows = epoch_rows(HISTORY)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[2]["grad_norm"] == 0.9
    write_csv(rows, tmp_path / "curves.csv")
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,grad_norm"
    assert len(lines) == 4


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
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "model.keras"):
        pass
    assert list(tmp_path.iterdir()) == []
