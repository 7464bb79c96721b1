"""Bad input and faults: each stops its stage with one line naming the problem, exit status 1,
and no output, partial or whole, for DVC to cache."""

import gzip
import hashlib
import json
import os
import re
import resource
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from conftest import REPO, idx_bytes, learnable_split, stage_argv
from trainstyles.pipeline import data
from trainstyles.pipeline.data import Split, find_source, load_raw, save_split, split_train
from trainstyles.pipeline.params import STYLES

OUTPUT_DIRS = ("data/prepared", "data/split", "models", "metrics", "plots", ".backup")


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory as DVC gives a stage: params.yaml (small) and the split data."""
    raw = YAML(typ="safe").load(REPO / "params.yaml")
    raw["split"] |= {"val_size": 100}
    raw["train"] |= {"batch_size": 32}
    for style in STYLES:
        raw[style]["epochs"] = 1
    YAML(typ="safe").dump(raw, tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def split_data(workdir) -> Path:
    for name, count in (("train", 320), ("val", 64), ("test", 64)):
        save_split(learnable_split(count, seed=len(name)), workdir / "data" / "split" / name)
    return workdir


def set_param(workdir: Path, keys: str, value) -> None:
    raw = YAML(typ="safe").load(workdir / "params.yaml")
    *path, last = keys.split(".")
    section = raw
    for key in path:
        section = section[key]
    section[last] = value
    YAML(typ="safe").dump(raw, workdir / "params.yaml")


# A stage run as DVC runs it, in its own process, with the test's pins for the data set's hashes
# (the tests' archives are a stand-in data set): its real exit status and its real stderr.
STAGE_WITH_PINS = """
import json, runpy, sys
from trainstyles.pipeline import data
pins, *sys.argv = sys.argv[1:]
data.IDX_SHA256.update(json.loads(pins))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def refused(stage: str) -> str:
    """Run the stage's script here as DVC would; it must exit with status 1 and say what is wrong
    in one line of its own, the last, with no traceback. Returns that line's message."""
    result = subprocess.run(
        [sys.executable, "-c", STAGE_WITH_PINS, json.dumps(data.IDX_SHA256),
         *stage_argv(stage)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    own = [line for line in result.stderr.splitlines() if line.startswith(f"{stage}:")]
    assert len(own) == 1 and result.stderr.splitlines()[-1] == own[0], result.stderr
    assert own[0].startswith(f"{stage}: error: "), own[0]
    return own[0].removeprefix(f"{stage}: error: ")


def assert_nothing_written(workdir: Path, *kept: str) -> None:
    for name in OUTPUT_DIRS:
        if name not in kept:
            assert not (workdir / name).exists() or not any((workdir / name).rglob("*")), name
    assert not [path for path in workdir.rglob("*") if ".tmp" in path.name]


BAD_PARAMS = [
    ("train_fit", "train_fit.epochz", 3, "train_fit.epochz = 3: extra inputs are not permitted"),
    ("train_fit", "train.batch_size", "128",
     "train.batch_size = '128': input should be a valid integer"),
    ("train_raw", "train_raw.epochs", 0, "train_raw.epochs = 0: input should be greater than 0"),
    ("train_step", "train_step.epochs", -2,
     "train_step.epochs = -2: input should be greater than 0"),
    ("train_fit", "train.batch_size", 0, "train.batch_size = 0: input should be greater than 0"),
    ("train_clipped", "train_clipped.clip_norm", -1.0,
     "train_clipped.clip_norm = -1.0: input should be greater than 0"),
    ("train_fit", "train_fit.callbacks.early_stopping.monitor", "val_acc",
     "train_fit.callbacks.early_stopping.monitor = 'val_acc': input should be 'loss', 'accuracy', "
     "'val_loss' or 'val_accuracy'"),
    ("train_step", "train_step.callbacks.checkpoint.mode", "maximum",
     "train_step.callbacks.checkpoint.mode = 'maximum': input should be 'min' or 'max'"),
    ("evaluate", "train.intra_op_threads", 0,
     "train.intra_op_threads = 0: input should be greater than 0"),
    ("train_raw", "train.device", "cuda",
     "train.device = 'cuda': input should be 'auto', 'cpu' or 'gpu'"),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "key", "value", "message"), BAD_PARAMS)
def test_bad_params_stop_the_stage_before_any_work(split_data, stage, key, value, message):
    set_param(split_data, key, value)
    assert refused(stage) == f"params.yaml: {message}"
    assert_nothing_written(split_data, "data/split")


def test_a_validation_set_as_large_as_the_training_set_is_refused(workdir):
    for part, count in (("train", 300), ("test", 50)):
        save_split(learnable_split(count, seed=1), workdir / "data" / "prepared" / part)
    set_param(workdir, "split.val_size", 300)
    assert refused("split") == "split.val_size = 300: must be smaller than the 300 training images"
    assert_nothing_written(workdir, "data/prepared")


@pytest.fixture
def mirror(fake_fashion_dir, workdir, monkeypatch) -> Path:
    monkeypatch.setenv("FASHION_MNIST_DIR", str(fake_fashion_dir))
    return fake_fashion_dir


def replace_archive(mirror: Path, name: str, content: bytes, monkeypatch, pin: bool) -> None:
    """Put `content` into the archive `name`; with `pin`, as if its hash were the pinned one
    (a copy of the data set other than the published one)."""
    (mirror / name).write_bytes(gzip.compress(content, mtime=0))
    if pin:
        monkeypatch.setitem(data.IDX_SHA256, name, hashlib.sha256(content).hexdigest())


def test_a_missing_archive_is_named(mirror, workdir):
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    assert refused("prepare").startswith("t10k-labels-idx1-ubyte.gz: missing at ")
    assert_nothing_written(workdir)


def test_a_truncated_archive_is_named_with_both_hashes(mirror, workdir):
    archive = mirror / "train-labels-idx1-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:-20])
    message = refused("prepare")
    assert message.startswith("train-labels-idx1-ubyte.gz: SHA-256 mismatch")
    assert message.endswith("(gzip stream is truncated)")
    assert_nothing_written(workdir)


def test_an_altered_archive_is_named_with_expected_and_actual_hash(mirror, workdir, monkeypatch):
    images = learnable_split(60, seed=9).images
    images[0, 0, 0] ^= 1
    content = idx_bytes(images)
    replace_archive(mirror, "t10k-images-idx3-ubyte.gz", content, monkeypatch, pin=False)
    expected = data.IDX_SHA256["t10k-images-idx3-ubyte.gz"]
    message = refused("prepare")
    assert message.startswith("t10k-images-idx3-ubyte.gz: SHA-256 mismatch")
    assert f"expected {expected}, actual {hashlib.sha256(content).hexdigest()}" in message
    assert_nothing_written(workdir)


STRUCTURE_FAULTS = [
    ("train-labels-idx1-ubyte.gz", b"\x00\x00\x09\x01" + bytes(4),
     "train-labels-idx1-ubyte.gz: not an IDX file of unsigned bytes with 1 or 3 dimensions"),
    ("train-images-idx3-ubyte.gz", idx_bytes(np.zeros((300, 32, 32))),
     "train-images-idx3-ubyte.gz: images are (32, 32), expected (n, 28, 28)"),
    ("train-labels-idx1-ubyte.gz", idx_bytes(np.full(300, 10)),
     "train-labels-idx1-ubyte.gz: label 10 outside 0-9"),
    ("t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(59)),
     "t10k-images-idx3-ubyte.gz has 60 images but t10k-labels-idx1-ubyte.gz has 59 labels"),
    ("t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((60, 28, 28)))[:-1],
     "t10k-images-idx3-ubyte.gz: IDX header says (60, 28, 28), but the data has another size"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), STRUCTURE_FAULTS)
def test_a_well_formed_gzip_holding_the_wrong_idx_is_refused(
    mirror, workdir, monkeypatch, name, content, message
):
    replace_archive(mirror, name, content, monkeypatch, pin=True)
    assert refused("prepare") == message
    assert_nothing_written(workdir)


@pytest.mark.slow  # starts a stage that loads TensorFlow
@pytest.mark.parametrize("stage", ["train_fit", "train_raw"])
def test_a_diverging_loss_stops_training_naming_epoch_and_step(split_data, stage):
    set_param(split_data, "train.learning_rate", 1.0e30)
    message = refused(stage)
    assert message.startswith("training diverged: loss is ")
    assert message.split(" at ")[1].startswith("epoch 1, step ")
    assert message.endswith("no model or metrics written")
    assert_nothing_written(split_data, "data/split")


@pytest.fixture(scope="session")
def fashion_4000() -> tuple[Split, Split]:
    """The first 4,000 real training images, read and verified once, split 2,000 and 2,000."""
    return split_train(load_raw(find_source())["train"].head(4000), 2000)


@pytest.fixture
def fashion_subset(workdir, fashion_4000) -> Path:
    """2,000 real training images and 2,000 to validate on (chance ± 0.007), for two epochs."""
    train, val = fashion_4000
    save_split(train, workdir / "data" / "split" / "train")
    save_split(val, workdir / "data" / "split" / "val")
    for style in STYLES:
        set_param(workdir, f"{style}.epochs", 2)
    return workdir


@pytest.mark.parametrize("stage", STYLES)
def test_a_run_that_did_not_learn_ends_with_one_warning_line(
    fashion_subset, stage, capsys, monkeypatch
):
    """A learning rate a billion times too high trains to finite figures at chance level: the
    stage writes them, as asked, and its last line says that the model did not learn."""
    set_param(fashion_subset, "train.learning_rate", 1.0e6)
    monkeypatch.setattr(sys, "argv", stage_argv(stage))
    runpy.run_path(sys.argv[0], run_name="__main__")
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"{stage}: warning: the model did not learn: its best val_accuracy 0.")
    assert last.endswith(
        "of chance (0.1000 for 10 classes); check train.learning_rate and the data"
    )
    assert (fashion_subset / "models" / f"{stage}.keras").is_file()


def test_the_same_run_at_the_tutorials_learning_rate_gives_no_warning(
    fashion_subset, capsys, monkeypatch
):
    monkeypatch.setattr(sys, "argv", stage_argv("train_raw"))
    runpy.run_path(sys.argv[0], run_name="__main__")
    said = capsys.readouterr()
    assert "warning" not in said.err
    assert float(re.search(r"val_accuracy (\d\.\d+)", said.out)[1]) > 0.5  # it learned


def test_a_report_without_a_run_says_so_in_one_line(workdir):
    result = subprocess.run(
        [sys.executable, "-m", "trainstyles.tools.report"],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("report: error: cannot read metrics/train_fit.json (")
    assert line.endswith("): run `dvc repro` first")
    assert not (workdir / "report").exists()


@pytest.mark.slow  # starts a stage that loads TensorFlow
def test_a_trainer_without_split_data_names_the_missing_file(workdir):
    assert refused("train_step") == "data/split/train/images.npy: No such file or directory"
    assert_nothing_written(workdir)


def test_the_training_stage_refuses_a_style_it_does_not_know_naming_those_it_does(split_data):
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py"), "train_fast"],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"train_fast: error: no style 'train_fast'; the styles are {', '.join(STYLES)}"
    )
    assert_nothing_written(split_data, "data/split")


@pytest.mark.slow  # starts a stage that loads TensorFlow
def test_a_model_that_does_not_load_names_the_style_and_the_file(split_data):
    models = split_data / "models"
    models.mkdir()
    for style in STYLES:
        (models / f"{style}.keras").write_bytes(b"PK\x03\x04 cut short")
    message = refused("evaluate")
    first = STYLES[0]
    assert message.startswith(f"cannot load the {first} model from models/{first}.keras: ")
    assert_nothing_written(split_data, "data/split", "models")


def test_a_full_disk_while_writing_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes writes past 100 kB fail as a full disk does (EFBIG instead of ENOSPC;
    Python ignores SIGXFSZ). The pins in a subprocess are the real ones, so the mirror holds
    the real files."""
    if not all((data.DEBIAN_DIR / name).is_file() for name in data.IDX_SHA256):
        pytest.skip("the real Fashion-MNIST is not installed")

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = subprocess.run(
        [sys.executable, REPO / "stages" / "prepare.py"],
        cwd=tmp_path,
        env={**os.environ, "FASHION_MNIST_DIR": str(data.DEBIAN_DIR)},
        preexec_fn=small_disk,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("prepare: error: cannot write data/prepared: ")
    assert line.endswith("requested and 99872 written; nothing written")  # numpy's short write
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


# A stage whose work is a print to stdout, a StageWarning and then success or a StageError.
PRINTING_STAGE = """
import sys, warnings
from trainstyles import StageError, StageWarning
from trainstyles.pipeline.stage import run_stage

def main():
    print("working")
    warnings.warn("looks odd", StageWarning, stacklevel=1)
    if sys.argv[1] == "fail":
        raise StageError("it broke")
    return "done"

run_stage(main, name="printing")
"""


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_a_stages_lines_reach_a_pipe_whole_though_its_process_skips_teardown(tmp_path, outcome):
    """Run as DVC runs a stage, run_stage ends the process without the interpreter's teardown,
    which would flush the output buffers: with Python's default buffering of a pipe, it must
    flush them itself."""
    script = tmp_path / "printing.py"
    script.write_text(PRINTING_STAGE)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, str(script), outcome],
        env=env | {"PYTHONPATH": str(REPO / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if outcome == "succeed":
        assert (result.returncode, result.stdout) == (0, "working\nprinting: done\n")
        assert result.stderr.splitlines()[-1] == "printing: warning: looks odd"
    else:
        assert (result.returncode, result.stdout) == (1, "working\n")
        assert result.stderr.splitlines()[-1] == "printing: error: it broke"


@pytest.mark.parametrize("stage", ["train_fit", "evaluate"])
@pytest.mark.parametrize("params_valid", [False, True])
def test_a_stage_refuses_bad_params_before_it_loads_tensorflow(split_data, stage, params_valid):
    """A `tensorflow` that fails on import stands in for the real one: a stage that loaded
    TensorFlow before it validated params would end in its traceback instead."""
    if not params_valid:
        set_param(split_data, "train.batch_size", 0)
    shadow = split_data / "shadow" / "tensorflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('TensorFlow loaded')")
    result = subprocess.run(
        [sys.executable, *stage_argv(stage)],
        env={**os.environ, "PYTHONPATH": f"{shadow.parent}:{REPO / 'src'}"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    if params_valid:  # the control: the stand-in bites once the stage's work starts
        assert "ImportError: TensorFlow loaded" in result.stderr
    else:
        assert result.stderr.splitlines()[-1].startswith(
            f"{stage}: error: params.yaml: train.batch_size = 0: "
        )
