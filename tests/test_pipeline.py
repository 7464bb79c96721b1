"""End to end: `dvc repro` of the whole pipeline in a temporary copy of the repository."""

import csv
import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import SMALL, commit, copy_repo, dvc, edit_params, stages_run
from trainstyles import STYLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository, with small params, after a full `dvc repro`."""
    copy = copy_repo(tmp_path_factory.mktemp("repo"), SMALL)
    dvc(copy, "repro")
    return copy


def test_every_declared_output_exists(repo):
    stages = YAML(typ="safe").load(repo / "dvc.yaml")["stages"]
    declared = [
        next(iter(out)) if isinstance(out, dict) else out
        for stage in stages.values()
        for out in stage.get("outs", []) + stage.get("metrics", [])
    ]
    assert len(declared) == 2 + 4 * 3 + 6  # prepare, split; 4 trainers; evaluate
    for out in declared:
        path = repo / out
        assert path.is_file() or any(path.iterdir()), out


def test_pipeline_is_up_to_date_after_repro(repo):
    assert "Data and pipelines are up to date." in dvc(repo, "status")


def test_metrics_show_has_one_row_per_style_with_shared_columns(repo):
    metrics = json.loads(dvc(repo, "metrics", "show", "--json"))
    files = next(iter(metrics.values()))["data"]
    rows = {style: files[f"metrics/{style}.json"]["data"] for style in STYLES}
    shared = set(rows["train_fit"])
    for style, row in rows.items():
        assert set(row) - {"grad_norm_first", "grad_norm_last"} == shared, style
        assert row["epochs_run"] == 2
        assert 0.0 < row["val_accuracy"] <= 1.0
        assert 0.1 < row["test_accuracy"] <= 1.0
        assert row["test_loss"] > 0
    clipped = rows["train_clipped"]
    assert clipped["grad_norm_first"] > 0 and clipped["grad_norm_last"] > 0
    assert "metrics/comparison.json" not in files  # an out, read by people and the report
    comparison = json.loads((repo / "metrics" / "comparison.json").read_text())
    assert len(comparison["agreement"]) == 6
    identical = comparison["identical_weights"]
    assert identical["train_fit_vs_train_step"] is True  # same math, same callbacks
    assert identical["train_fit_vs_train_clipped"] is False  # a clip of 1.0 bites
    for style in STYLES:
        timing = files[f"metrics/timing/{style}.json"]["data"]
        assert timing["train_seconds"] > 0 and timing["epochs_timed"] == 2
    table = dvc(repo, "metrics", "show")
    assert all(f"metrics/{style}.json" in table for style in STYLES)


def test_curves_have_the_learning_rate_and_the_clip_beside_the_norm(repo):
    for style in STYLES:
        header = (repo / "plots" / f"{style}.csv").read_text().splitlines()[0].split(",")
        assert "learning_rate" in header, style
    with (repo / "plots" / "train_clipped.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [float(row["clip_norm"]) for row in rows] == [1.0, 1.0]
    # Adam keeps the rate as float32: 0.001 is 0.0010000000474974513 there.
    assert [float(row["learning_rate"]) for row in rows] == [pytest.approx(0.001, rel=1e-7)] * 2


def test_confusion_plots_have_one_row_per_test_image(repo):
    for style in STYLES:
        lines = (repo / "plots" / "confusion" / f"{style}.csv").read_text().splitlines()
        assert lines[0] == "actual,predicted" and len(lines) == 1 + 200


def test_a_forced_rerun_reproduces_every_output_to_the_byte(repo):
    lock = (repo / "dvc.lock").read_text()
    dvc(repo, "repro", "--force")
    assert (repo / "dvc.lock").read_text() == lock
    assert "Data and pipelines are up to date." in dvc(repo, "status")


def test_the_lock_comparison_can_fail_another_rounding_changes_the_models_hash(repo):
    """The control: the same check on a run that rounds differently (model.hidden_order, on any
    machine) sees other bytes; the params put back, the same bytes as before return."""
    lock = (repo / "dvc.lock").read_text()
    params = (repo / "params.yaml").read_text()
    edit_params(repo / "params.yaml", {"model": {"hidden_order": 1}})
    try:
        dvc(repo, "repro", "--single-item", "train_raw")
        rounded = YAML(typ="safe").load(repo / "dvc.lock")["stages"]["train_raw"]["outs"]
    finally:
        (repo / "params.yaml").write_text(params)
    before = YAML(typ="safe").load(lock)["stages"]["train_raw"]["outs"]
    model = [
        out["md5"] for out in (before, rounded) for out in out if out["path"].endswith(".keras")
    ]
    assert model[0] != model[1]
    dvc(repo, "repro")
    assert (repo / "dvc.lock").read_text() == lock


SHARED = {
    "seed": 7,
    "model": {"hidden_units": [32]},
    "train": {"batch_size": 50},
    "distribute": {"strategy": "mirrored"},
}
STYLE_EDITS = {
    "train_fit": {"epochs": 3},
    "train_step": {"epochs": 3},
    "train_raw": {"epochs": 3},
    "train_clipped": {"clip_norm": 0.5},
}


@pytest.mark.parametrize("section", [*STYLE_EDITS, *SHARED])
def test_status_names_exactly_the_stages_a_params_edit_affects(repo, section):
    params = repo / "params.yaml"
    original = params.read_text()
    try:
        if section in STYLE_EDITS:
            edit_params(params, {section: STYLE_EDITS[section]})
            expected = {section, "evaluate"}
        else:
            edit_params(params, {section: SHARED[section]})
            expected = {*STYLES, "evaluate"}
        assert set(json.loads(dvc(repo, "status", "--json"))) == expected
    finally:
        params.write_text(original)


def test_a_styles_params_rerun_only_that_style_and_evaluate(repo):
    params = repo / "params.yaml"
    original = params.read_text()
    try:
        edit_params(params, {"train_clipped": {"clip_norm": 0.5}})
        assert stages_run(dvc(repo, "repro")) == {"train_clipped", "evaluate"}
    finally:
        params.write_text(original)
        dvc(repo, "repro")


def test_a_pushed_run_pulls_into_a_fresh_clone_with_nothing_to_rerun(repo, tmp_path):
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    dvc(repo, "remote", "add", "--default", "local", str(remote))
    commit(repo, "a full run")
    dvc(repo, "push")
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)

    dvc(clone, "pull")
    assert "Data and pipelines are up to date." in dvc(clone, "status")
    assert "Data and pipelines are up to date." in dvc(clone, "repro")
    for style in STYLES:
        model = f"models/{style}.keras"
        assert (clone / model).read_bytes() == (repo / model).read_bytes()
    assert (clone / "data/split/train/images.npy").read_bytes() == (
        repo / "data/split/train/images.npy"
    ).read_bytes()
