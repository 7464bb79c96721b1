"""End to end: `dvc repro` of the whole pipeline in a temporary copy of the repository."""

import csv
import json
import os
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import commit, copy_run, dvc, edit_params, stage_argv
from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.stage import MACHINE_DIR
from trainstyles.tools.machines import describe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(small_run, tmp_path_factory) -> Path:
    """A copy of the session's small run: the repository on small params after `dvc repro`."""
    return copy_run(small_run, tmp_path_factory.mktemp("pipeline") / "repo")


def declared_outputs(repo: Path, stage: str | None = None) -> list[str]:
    """The paths dvc.yaml declares as outputs (outs and metrics), of one stage or of all."""
    stages = YAML(typ="safe").load(repo / "dvc.yaml")["stages"]
    return [
        next(iter(out)) if isinstance(out, dict) else out
        for name, entry in stages.items()
        if stage in (None, name)
        for out in entry.get("outs", []) + entry.get("metrics", [])
    ]


def test_every_declared_output_exists(repo):
    declared = declared_outputs(repo)
    # prepare, split; a model, curves and machine per style; evaluate's two and a metric per style
    assert len(declared) == 2 + 3 * len(STYLES) + 2 + len(STYLES)
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
    assert len(comparison["agreement"]) == len(list(combinations(STYLES, 2)))
    identical = comparison["identical_weights"]
    assert identical["train_fit_vs_train_step"] is True  # same math, same callbacks
    assert identical["train_fit_vs_train_clipped"] is False  # a clip of 1.0 bites
    for style in STYLES:
        timing = files[f"metrics/timing/{style}.json"]["data"]
        assert timing["train_seconds"] > 0 and timing["epochs_timed"] == 2
        assert timing["train_seconds"] < timing["wall_seconds"]
    table = dvc(repo, "metrics", "show")
    assert all(f"metrics/{style}.json" in table for style in STYLES)


def test_metrics_show_has_each_stages_wall_time_and_peak_memory(repo):
    files = next(iter(json.loads(dvc(repo, "metrics", "show", "--json")).values()))["data"]
    stages = YAML(typ="safe").load(repo / "dvc.yaml")["stages"]
    for stage in stages:
        took = files[f"metrics/timing/{stage}.json"]["data"]
        assert 0 < took["wall_seconds"] < 600, stage
        assert 10 < took["peak_rss_mb"] < 100_000, stage
    # The trainers and evaluate load TensorFlow; prepare and split do not.
    assert files["metrics/timing/split.json"]["data"]["peak_rss_mb"] < min(
        files[f"metrics/timing/{stage}.json"]["data"]["peak_rss_mb"] for stage in STYLES
    )


def test_curves_have_the_learning_rate_and_the_clip_beside_the_norm(repo):
    for style in STYLES:
        header = (repo / "plots" / f"{style}.csv").read_text().splitlines()[0].split(",")
        assert "learning_rate" in header, style
    with (repo / "plots" / "train_clipped.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [float(row["clip_norm"]) for row in rows] == [1.0, 1.0]
    # Adam keeps the rate as float32: 0.001 is 0.0010000000474974513 there.
    assert [float(row["learning_rate"]) for row in rows] == [pytest.approx(0.001, rel=1e-7)] * 2


@pytest.mark.skipif(bool(shutil.which("nvidia-smi")), reason="an NVIDIA driver is present here")
def test_each_trainer_records_the_devices_it_trained_on(repo):
    """No GPU: every style trained on the CPU, and its machine record says so."""
    for style in STYLES:
        machine = json.loads((repo / MACHINE_DIR / f"{style}.json").read_text())
        assert machine["devices"] == ["CPU:0"], style
        assert describe(machine).endswith("; trained on CPU:0")


def test_confusion_plots_have_one_row_per_test_image(repo):
    for style in STYLES:
        lines = (repo / "plots" / "confusion" / f"{style}.csv").read_text().splitlines()
        assert lines[0] == "actual,predicted" and len(lines) == 1 + 200


# A stage run as DVC runs it, watched from inside by a Python audit hook: it logs every file the
# stage opens for writing, and the state of the stage's outputs just before each rename or tree
# removal. Between two of those moments a kill changes no output, so these states are every state
# a kill can leave. `before` is code run first (the control breaks the atomic writes with it).
WATCHED_STAGE = """
import atexit, hashlib, json, os, runpy, sys
from pathlib import Path

outs, log_path, before, script = sys.argv[1:]
outs = [Path(out).resolve() for out in json.loads(outs)]
log = open(log_path, "w")

def state():
    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    found = {}
    for out in outs:
        if out.is_dir():
            files = sorted(path for path in out.rglob("*") if path.is_file())
            found[str(out)] = {str(path.relative_to(out)): digest(path) for path in files} or None
        else:
            found[str(out)] = digest(out) if out.is_file() else None
    return found

def record(**entry):
    log.write(json.dumps(entry) + "\\n")

def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2] or 0
        if any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR):
            record(write=os.path.abspath(os.fsdecode(args[0])))
    elif event in ("os.rename", "shutil.rmtree"):
        record(event=event, outs=state())

atexit.register(lambda: (record(event="exit", outs=state()), log.flush()))
exec(before)
sys.addaudithook(hook)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""
# The control's break: the directory outputs written in place, as a naive stage would.
IN_PLACE = """
import contextlib
from trainstyles.pipeline import outputs
@contextlib.contextmanager
def in_place(final):
    final.mkdir(parents=True, exist_ok=True)
    yield final
outputs.atomic_dir = in_place
"""


def kill_states(repo: Path, stage: str, log: Path, before: str = "") -> list[str]:
    """Run `stage` from scratch (DVC removes its outputs first) under WATCHED_STAGE; returns what
    a kill could leave that is neither the output whole nor no output, and every write that went
    straight to a declared output rather than to a temporary name."""
    outs = [str(repo / out) for out in declared_outputs(repo, stage)]
    for out in map(Path, outs):
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink(missing_ok=True)
    command = [sys.executable, "-c", WATCHED_STAGE, json.dumps(outs), str(log), before]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    run = subprocess.run(
        [*command, *stage_argv(stage, repo)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    final = entries[-1]["outs"]
    assert entries[-1]["event"] == "exit" and all(final.values()), final
    partial = [
        f"{out} at {entry['event']} #{number}"
        for number, entry in enumerate(entries)
        for out, found in entry.get("outs", {}).items()
        if found not in (None, final[out])
    ]
    in_place = [
        entry["write"]
        for entry in entries
        if "write" in entry and any(Path(entry["write"]).is_relative_to(out) for out in outs)
    ]
    renamed = any(entry.get("event") == "os.rename" for entry in entries)
    return partial + in_place + ([] if renamed else ["no output was renamed into place"])


@pytest.mark.parametrize("stage", ["prepare", "split", "evaluate"])
def test_a_kill_at_any_point_of_a_stage_leaves_each_output_whole_or_absent(repo, stage, tmp_path):
    lock = (repo / "dvc.lock").read_text()
    assert kill_states(repo, stage, tmp_path / "log") == []
    assert "Data and pipelines are up to date." in dvc(repo, "status")  # the same bytes again
    assert (repo / "dvc.lock").read_text() == lock


def test_the_kill_states_can_fail_a_directory_written_in_place(repo, tmp_path):
    try:
        broken = kill_states(repo, "split", tmp_path / "log", IN_PLACE)
        assert any("data/split/train/" in found for found in broken), broken
    finally:
        dvc(repo, "checkout", "data/split")
    assert "Data and pipelines are up to date." in dvc(repo, "status")


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
STYLE_EDITS = {style: {"epochs": 3} for style in STYLES}


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


def test_an_edit_to_how_training_resumes_leaves_evaluate_up_to_date(repo):
    """evaluate imports the style modules (they register the model classes it loads), but not
    the trainer: an edit to resume points makes only the trainers stale."""
    resume = repo / "src" / "trainstyles" / "pipeline" / "resume.py"
    original = resume.read_text()
    try:
        resume.write_text(original + "\n# an edit\n")
        assert set(json.loads(dvc(repo, "status", "--json"))) == set(STYLES)
    finally:
        resume.write_text(original)


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
