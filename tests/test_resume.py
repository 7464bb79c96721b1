"""A training run stopped after any epoch resumes and ends exactly as an uninterrupted one."""

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, copy_repo, dvc, edit_params, learnable_split, stage_argv, tiny_params
from trainstyles import StageError
from trainstyles.pipeline import resume, training
from trainstyles.pipeline.data import Split, save_split
from trainstyles.pipeline.params import STYLES, DistributeParams
from trainstyles.pipeline.resume import Backup, run_fingerprint
from trainstyles.pipeline.styles import raw, step, style_module
from trainstyles.pipeline.training import train_on

TRAIN, VAL = learnable_split(480, seed=30), learnable_split(96, seed=31)


def resumable_params(style: str, epochs: int):
    # At this learning rate val_loss reaches its floor by epoch 3, so from epoch 4 on the
    # counters of ReduceLROnPlateau (halves the rate in epoch 6) and EarlyStopping (stops after
    # it) decide: a resume after epoch 4 that lost them would train a different model.
    return tiny_params(
        train={"learning_rate": 0.05},
        **{style: {"epochs": epochs}},
    )


@functools.cache
def uninterrupted_run(style: str) -> tuple[list[bytes], dict, bytes]:
    """The style's weights, history and curves after 6 epochs in one go: trained once,
    compared twice."""
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        whole = Backup(work / "whole", fingerprint="run", curves=work / "curves.csv")
        trainer = style_module(style).train
        model, history = train_on(trainer, resumable_params(style, 6), TRAIN, VAL, whole, work)
        curves = (work / "curves.csv").read_bytes()
    return [weights.tobytes() for weights in model.get_weights()], history, curves


# The curves as each write leaves them, for the one file a test watches: sys.addaudithook has no
# undo, so the hook, added once, records only while `WATCHED` names a file.
WATCHED: dict[Path, list] = {}


def record_curves(event: str, args: tuple) -> None:
    for curves, writes in WATCHED.items():
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            mode, flags = args[1], args[2] or 0
            writing = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR)
            if writing and Path(args[0]).resolve() == curves:
                writes.append("written in place")
        elif event == "os.rename" and Path(args[1]).resolve() == curves:
            writes.append(Path(args[0]).read_bytes())  # what the rename is about to publish


@functools.cache
def watch_hook() -> None:
    sys.addaudithook(record_curves)


def curve_writes(curves: Path) -> list:
    """What each write of `curves` publishes, from now on: the file's bytes at each rename into
    place, or "written in place" for an open that writes the file itself."""
    watch_hook()
    WATCHED.clear()
    WATCHED[curves.resolve()] = []
    return WATCHED[curves.resolve()]


def first_epochs(curves: bytes, epochs: int) -> bytes:
    """The header and the first `epochs` rows of `curves`."""
    return b"".join(curves.splitlines(keepends=True)[: 1 + epochs])


@pytest.mark.parametrize("style, module", [("train_step", step), ("train_raw", raw)])
def test_resuming_after_an_epoch_ends_as_an_uninterrupted_run(tmp_path, style, module):
    """The same weights and history, and each epoch's curves published whole with every epoch
    so far: the first write after the resume holds the restored epochs, as an uninterrupted
    run's write after that epoch does."""
    weights, history, curves = uninterrupted_run(style)

    # A run that stopped after epoch 4 left the same resume point as one whose budget was 4.
    writes = curve_writes(tmp_path / "curves.csv")
    try:
        parts = Backup(tmp_path / "parts", fingerprint="run", curves=tmp_path / "curves.csv")
        train_on(module.train, resumable_params(style, 4), TRAIN, VAL, parts, tmp_path)
        resumed = Backup(tmp_path / "parts", fingerprint="run", curves=tmp_path / "curves.csv")
        assert resumed.epochs_done == 4
        resumed_model, resumed_history = train_on(
            module.train, resumable_params(style, 6), TRAIN, VAL, resumed, tmp_path
        )
    finally:
        WATCHED.clear()

    assert resumed_history == history
    assert [weights.tobytes() for weights in resumed_model.get_weights()] == weights
    assert writes == [first_epochs(curves, epochs) for epochs in range(1, 7)]
    assert (tmp_path / "curves.csv").read_bytes() == curves
    if style == "train_step":
        assert history["learning_rate"][-1] < history["learning_rate"][0]


def test_the_comparison_can_fail_a_resume_that_drops_the_callbacks_counters(tmp_path, monkeypatch):
    """The control: a resume that keeps weights, optimizer and history but not the counters of
    ReduceLROnPlateau and EarlyStopping (Keras' own BackupAndRestore) trains another model."""
    style, module = "train_step", step
    _, history, _ = uninterrupted_run(style)
    monkeypatch.setattr(resume.BackupAndResume, "STATE", {})
    parts = Backup(tmp_path / "parts", fingerprint="run")
    train_on(module.train, resumable_params(style, 4), TRAIN, VAL, parts, tmp_path)
    resumed = Backup(tmp_path / "parts", fingerprint="run")
    _, forgetful = train_on(module.train, resumable_params(style, 6), TRAIN, VAL, resumed, tmp_path)
    assert forgetful != history


def test_a_resume_point_of_other_params_or_data_is_discarded(tmp_path):
    backup = Backup(tmp_path, fingerprint="first")
    with backup.new_point(1, finished=False, state={"history": {}}) as point:
        (point / "weights").write_text("w")
    assert Backup(tmp_path, fingerprint="first").epochs_done == 1
    assert Backup(tmp_path, fingerprint="second").epochs_done == 0
    assert not list(tmp_path.glob("epoch-*"))


@pytest.fixture
def checkout(tmp_path) -> Path:
    """What run_fingerprint reads of a checkout (dvc.yaml, the stages, the code), copied to edit."""
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    for part in ("stages", "src"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def append_line(path: Path) -> None:
    with path.open("a") as source:
        source.write("# an edit\n")


def test_a_resume_point_survives_every_edit_that_cannot_change_the_run(checkout):
    """The control of the fingerprint below: an edit that DVC would not re-run train_fit for
    (every tool module, another style's module, another style's params) keeps its point, as a
    fingerprint of the whole package and all params would not."""
    first = run_fingerprint("train_fit", tiny_params(), TRAIN, VAL, checkout=checkout)
    assert run_fingerprint("train_fit", tiny_params(), TRAIN, VAL, checkout=REPO) == first
    for tool in (checkout / "src" / "trainstyles" / "tools").rglob("*.py"):
        append_line(tool)
    append_line(checkout / "src" / "trainstyles" / "pipeline" / "styles" / "raw.py")
    others = tiny_params(train_clipped={"clip_norm": 9.0}, train_raw={"epochs": 5})
    assert run_fingerprint("train_fit", others, TRAIN, VAL, checkout=checkout) == first


def test_a_resume_point_is_discarded_by_an_edit_to_the_stages_code_params_or_data(checkout):
    """What decides whether a resume point is stale: a constant here would resume a run made
    with other params, data or code, and publish a model trained under them."""
    first = run_fingerprint("train_fit", tiny_params(), TRAIN, VAL, checkout=checkout)
    own = tiny_params(train_fit={"epochs": 3})
    assert run_fingerprint("train_fit", own, TRAIN, VAL, checkout=checkout) != first
    shared = tiny_params(train={"learning_rate": 0.002})
    assert run_fingerprint("train_fit", shared, TRAIN, VAL, checkout=checkout) != first
    images = TRAIN.images.copy()
    images[0, 0, 0] ^= 1
    flipped = Split(images, TRAIN.labels)
    assert run_fingerprint("train_fit", tiny_params(), flipped, VAL, checkout=checkout) != first
    append_line(checkout / "src" / "trainstyles" / "pipeline" / "model.py")
    assert run_fingerprint("train_fit", tiny_params(), TRAIN, VAL, checkout=checkout) != first


def test_a_stage_that_dvc_yaml_does_not_list_has_no_resume_point(checkout):
    with pytest.raises(StageError, match=r"dvc\.yaml has no stage 'train_none'"):
        run_fingerprint("train_none", tiny_params(), TRAIN, VAL, checkout=checkout)


def test_a_point_is_published_whole_or_not_at_all(tmp_path):
    backup = Backup(tmp_path, fingerprint="run")
    with backup.new_point(1, finished=False, state={"history": {}}):
        pass
    with pytest.raises(RuntimeError), backup.new_point(2, finished=False, state={"history": {}}):
        raise RuntimeError("killed while writing")
    assert Backup(tmp_path, fingerprint="run").epochs_done == 1
    assert [path.name for path in tmp_path.iterdir() if path.is_dir()] == ["epoch-0001"]


def test_an_interrupt_during_a_save_keeps_a_whole_point_and_the_stage_names_the_one_on_disk(
    tmp_path, monkeypatch
):
    """Ctrl-C before the rename that publishes epoch 2's point keeps epoch 1's; after it, while
    the old point is removed, epoch 2's is on disk though the run had not yet recorded it."""
    backup = Backup(tmp_path, fingerprint="run")
    with backup.new_point(1, finished=False, state={"history": {}}):
        pass
    with pytest.raises(KeyboardInterrupt), backup.new_point(2, False, {"history": {}}) as point:
        (point / "weights").write_text("half")
        raise KeyboardInterrupt
    said = (
        "interrupted in epoch 2/4; kept the resume point after epoch {}: `dvc repro` resumes there"
    )
    assert training.interrupted(backup, tmp_path, epochs=4) == said.format(1)
    assert Backup(tmp_path, fingerprint="run").epochs_done == 1

    def interrupted_removing(path, *args, **kwargs):
        if path == tmp_path / "epoch-0001":
            raise KeyboardInterrupt
        remove(path, *args, **kwargs)

    remove = shutil.rmtree
    monkeypatch.setattr(resume.shutil, "rmtree", interrupted_removing)
    with pytest.raises(KeyboardInterrupt), backup.new_point(2, False, {"history": {}}):
        pass
    assert backup.epochs_done == 1  # what the run knew
    assert training.interrupted(backup, tmp_path, epochs=4) == said.format(2)
    assert Backup(tmp_path, fingerprint="run").epochs_done == 2


def test_an_interrupt_before_any_point_says_the_stage_starts_again(tmp_path):
    assert training.interrupted(None, tmp_path / "none", epochs=4) == (
        "interrupted before training began; no resume point: `dvc repro` starts again from epoch 1"
    )


KILL_STYLES = STYLES  # the README promises crash-resume for every style


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository copy with split data big enough for epochs of half a second or so."""
    params = {
        "split": {"val_size": 500, "train_limit": 8000, "test_limit": 100},
        "train": {"batch_size": 32},
        **{style: {"epochs": 4} for style in KILL_STYLES},
    }
    copy = copy_repo(tmp_path_factory.mktemp("resume"), params)
    dvc(copy, "repro", "split")
    return copy


def stage(repo: Path, style: str, stderr: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    command = [sys.executable, *stage_argv(style, repo)]
    return subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )


def killed_after_epoch_1(repo: Path, style: str) -> None:
    """Start the stage and SIGKILL it (no clean-up runs) once its first resume point exists."""
    killed = stage(repo, style)
    first_point = repo / ".backup" / style / "epoch-0001" / "state.json"
    while not first_point.exists() and killed.poll() is None:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, f"{style} ended before its first resume point"
    assert first_point.exists()


def assert_curves_show_the_kept_epochs(repo: Path, style: str, finished: bytes) -> None:
    """A stopped stage's curves: the epochs of the resume point on disk (one fewer if it stopped
    between that point and the curves, none as no file), as the finished run wrote them."""
    kept = resume.epochs_kept(repo / ".backup" / style)
    path = repo / f"plots/{style}.csv"
    shown = len(path.read_bytes().splitlines()) - 1 if path.exists() else 0
    assert shown in (kept - 1, kept), (shown, kept)
    if shown:
        assert path.read_bytes() == first_epochs(finished, shown)


def outputs(repo: Path, style: str) -> dict[str, bytes]:
    paths = [f"models/{style}.keras", f"plots/{style}.csv"]  # the curves hold every figure
    return {path: (repo / path).read_bytes() for path in paths}


@pytest.fixture(scope="module")
def uninterrupted(repo) -> Callable[[str], dict[str, bytes]]:
    """A style's outputs from an uninterrupted stage run, trained once for every test that
    compares a resumed run with them; the outputs are then removed, as DVC does before it runs
    a stage."""
    made = {}

    def outputs_of(style: str) -> dict[str, bytes]:
        if style not in made:
            assert stage(repo, style).wait() == 0
            made[style] = outputs(repo, style)
        for path in made[style]:
            (repo / path).unlink(missing_ok=True)
        return made[style]

    return outputs_of


@pytest.mark.slow
@pytest.mark.parametrize("style", KILL_STYLES)
def test_a_stage_killed_mid_epoch_resumes_to_the_same_bytes(repo, uninterrupted, style):
    expected = uninterrupted(style)
    killed_after_epoch_1(repo, style)
    assert not (repo / f"models/{style}.keras").exists()
    assert_curves_show_the_kept_epochs(repo, style, expected[f"plots/{style}.csv"])

    rerun = stage(repo, style)
    summary = rerun.communicate()[0].splitlines()[-1]
    assert rerun.returncode == 0
    resumed_after = int(summary.split("resumed after epoch ")[1].split(";")[0])
    assert 1 <= resumed_after < 4
    assert outputs(repo, style) == expected
    assert not (repo / ".backup" / style).exists()
    assert np.all(np.isfinite(np.loadtxt(repo / f"plots/{style}.csv", delimiter=",", skiprows=1)))


# What an interrupted trainer says last (training.interrupted); the fixture trains 4 epochs.
INTERRUPTED = re.compile(
    r"(?P<style>train_\w+): interrupted in epoch (?P<epoch>\d+)/4; "
    r"kept the resume point after epoch (?P<kept>\d+): `dvc repro` resumes there"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, style",
    # One loop each: fit()'s callbacks and the raw loop reach the resume point differently.
    [(signal.SIGINT, "train_fit"), (signal.SIGTERM, "train_raw")],
    ids=lambda value: getattr(value, "name", value),
)
def test_an_interrupted_stage_says_where_it_stopped_in_one_line_and_dvc_repro_resumes(
    repo, uninterrupted, signum, style
):
    """Ctrl-C, or docker stop's SIGTERM, mid-epoch: the shell's exit status, no traceback, a last
    line that names the epoch and the resume point on disk, and `dvc repro` resumes from it to
    the bytes of an uninterrupted run."""
    expected = uninterrupted(style)
    interrupted = stage(repo, style, stderr=subprocess.PIPE)
    first_point = repo / ".backup" / style / "epoch-0001" / "state.json"
    while not first_point.exists() and interrupted.poll() is None:
        time.sleep(0.01)
    time.sleep(0.1)  # into epoch 2
    interrupted.send_signal(signum)
    stderr = interrupted.communicate()[1]

    assert interrupted.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    said = INTERRUPTED.fullmatch(stderr.strip().splitlines()[-1])
    assert said, stderr
    kept = int(said["kept"])
    assert said["style"] == style
    assert 1 <= kept < 4
    assert int(said["epoch"]) in (kept, kept + 1)  # the signal came after or before its save
    assert (repo / ".backup" / style / f"epoch-{kept:04d}" / "state.json").exists()
    # No model, not even a temporary file beside an output; the curves of the kept epochs.
    assert not (repo / f"models/{style}.keras").exists()
    assert_curves_show_the_kept_epochs(repo, style, expected[f"plots/{style}.csv"])
    assert not [
        path for top in ("models", "plots", "metrics") for path in (repo / top).rglob(".*.tmp*")
    ]

    resumed = dvc(repo, "repro", "--single-item", style)
    assert f"resumed after epoch {kept};" in resumed
    assert outputs(repo, style) == expected
    assert not (repo / ".backup" / style).exists()


@pytest.mark.slow
def test_a_stage_with_a_stale_resume_point_starts_again_from_epoch_1(repo):
    """Killed after epoch 1, then re-run under other params: the resume point was made for the
    old params (run_fingerprint), so the stage must train from epoch 1, not resume."""
    style = "train_raw"
    killed_after_epoch_1(repo, style)

    params = (repo / "params.yaml").read_text()
    edit_params(repo / "params.yaml", {style: {"epochs": 3}})
    try:
        rerun = stage(repo, style)
        summary = rerun.communicate()[0].splitlines()[-1]
    finally:
        (repo / "params.yaml").write_text(params)
    assert rerun.returncode == 0
    assert "resumed" not in summary
    assert "/3, val_accuracy" in summary  # the best of 3 epochs, all trained now
    rows = np.loadtxt(repo / f"plots/{style}.csv", delimiter=",", skiprows=1)
    assert rows[:, 0].tolist() == [1, 2, 3]


@pytest.fixture
def stage_dir(tmp_path) -> Path:
    """A working directory as DVC gives a trainer: small params and split data."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    edit_params(tmp_path / "params.yaml", {"train": {"batch_size": 32}, "train_raw": {"epochs": 2}})
    save_split(TRAIN, tmp_path / "data" / "split" / "train")
    save_split(VAL, tmp_path / "data" / "split" / "val")
    return tmp_path


# The trainer dies as a kill would stop it, once training has finished and its last resume point
# is saved, as it starts to write its outputs.
KILLED_WHILE_WRITING = """
import os, runpy, sys
from trainstyles.pipeline import training
training.publish_keras = lambda *args: os._exit(137)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_trainer(directory: Path, *code: str) -> subprocess.CompletedProcess:
    """The train_raw stage in its own process, as DVC runs it; `code` replaces the plain run."""
    command = [sys.executable, *code] if code else [sys.executable]
    command += stage_argv("train_raw")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.slow  # starts stages that load TensorFlow
def test_a_stage_killed_while_writing_its_outputs_publishes_the_finished_run(stage_dir):
    """The re-run trains nothing and publishes what the killed run made, to the byte."""
    assert run_trainer(stage_dir).returncode == 0
    uninterrupted = {path: (stage_dir / path).read_bytes() for path in OUTPUTS}
    for path in OUTPUTS:
        (stage_dir / path).unlink()

    killed = run_trainer(stage_dir, "-c", KILLED_WHILE_WRITING)
    assert killed.returncode == 137
    assert (stage_dir / ".backup" / "train_raw" / "epoch-0002").is_dir()  # the finished point
    assert not (stage_dir / "models" / "train_raw.keras").exists()
    rerun = run_trainer(stage_dir)
    assert rerun.returncode == 0
    assert "Epoch 1/" not in rerun.stdout  # it trained nothing
    assert "resumed after epoch 2" in rerun.stdout.splitlines()[-1]
    assert {path: (stage_dir / path).read_bytes() for path in OUTPUTS} == uninterrupted


OUTPUTS = ("models/train_raw.keras", "plots/train_raw.csv", "metrics/machine/train_raw.json")


def test_a_run_that_fails_leaves_neither_curves_nor_resume_points(stage_dir, monkeypatch):
    """A style that diverges after an epoch whose point, and so curves, were written: the stage
    fails with no output, as before it wrote curves each epoch."""
    monkeypatch.chdir(stage_dir)
    curves = stage_dir / "plots" / "train_raw.csv"

    def diverges_in_epoch_2(params, run):
        with run.backup.new_point(1, finished=False, state={"history": {"val_accuracy": [0.5]}}):
            pass
        assert curves.read_text().splitlines() == ["epoch,val_accuracy", "1,0.5"]
        raise StageError("training diverged")

    params = tiny_params()
    with pytest.raises(StageError, match="training diverged"):
        training.train_style("train_raw", params, train=diverges_in_epoch_2)
    assert not curves.exists()
    assert not (stage_dir / ".backup" / "train_raw").exists()


def test_under_multi_worker_no_resume_point_outlives_the_job(monkeypatch):
    """Every worker would have to resume from the same epoch: none does, each run keeps its
    resume points in a directory of its own, removed when it ends."""
    monkeypatch.delenv("TF_CONFIG", raising=False)  # this process is the chief
    params = DistributeParams(strategy="multi_worker")
    first, second = (
        training.where_to_write("train_raw", params),
        training.where_to_write("train_raw", params),
    )
    assert first[1] != second[1]  # a new resume directory for each run
    assert all(scratch and backup.is_relative_to(scratch) for _, backup, scratch in (first, second))
    local = training.where_to_write("train_raw", DistributeParams(strategy="none"))
    assert local == (Path(), Path(".backup/train_raw"), None)  # the control: a local run resumes
    for _, _, scratch in (first, second):
        shutil.rmtree(scratch)


def holds_interrupts(pid: int) -> bool:
    """Whether the process blocks SIGINT now, as a trainer does once its first import ran."""
    status = Path(f"/proc/{pid}/status").read_text()
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)", status, re.MULTILINE)[1], 16)
    return bool(blocked >> (signal.SIGINT - 1) & 1)


@pytest.mark.slow  # starts a stage that loads TensorFlow
def test_a_ctrl_c_while_tensorflow_loads_ends_in_the_same_one_line(stage_dir):
    """Sent while the trainer still imports TensorFlow: held until training starts, then the
    same line as mid-training, and the trainer stops before it trains or writes anything."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    trainer = subprocess.Popen(
        [sys.executable, *stage_argv("train_raw")],
        cwd=stage_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while not holds_interrupts(trainer.pid):
        assert trainer.poll() is None
        time.sleep(0.001)
    assert "tensorflow" not in Path(f"/proc/{trainer.pid}/maps").read_text()  # still loading
    trainer.send_signal(signal.SIGINT)
    stdout, stderr = trainer.communicate()

    assert trainer.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "train_raw: interrupted before training began; no resume point: "
        "`dvc repro` starts again from epoch 1"
    )
    assert stdout == ""  # not even the device line: it stopped as training began
    assert not [path for path in OUTPUTS if (stage_dir / path).exists()]
