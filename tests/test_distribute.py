"""tf.distribute: each style under MirroredStrategy on 2 logical CPUs matches its single-device
run, and a two-worker MultiWorkerMirroredStrategy job on localhost ends with equal weights.

TensorFlow fixes its devices when it starts, and this test session's may have started already:
every distributed run here is a fresh Python process.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from conftest import FIT_STYLES, REPO, learnable_split, stage_argv
from trainstyles.pipeline.data import save_split
from trainstyles.pipeline.params import STYLES

pytestmark = pytest.mark.slow

# Trains every style on a synthetic subset under the strategy given on the command line and
# writes each one's per-epoch history and final weights.
ALL_STYLES = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from conftest import learnable_split, tiny_params
from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.resume import Backup
from trainstyles.pipeline.styles import style_module
from trainstyles.pipeline.training import train_on

strategy, logical_cpus, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
# No XLA in either run: a strategy's replicas train without it (determinism.uses_xla), and the
# single run must differ from them only in the distribution.
params = tiny_params(
    train={"steps_per_execution": 1, "jit_compile": False},
    distribute={"strategy": strategy, "logical_cpus": logical_cpus},
)
train, val = learnable_split(600, seed=40), learnable_split(100, seed=41)
histories = {}
with tempfile.TemporaryDirectory() as work:
    for style in STYLES:
        backup = Backup(Path(work) / style, fingerprint=style)
        trainer = style_module(style).train
        model, histories[style] = train_on(trainer, params, train, val, backup, Path(work) / "logs")
        np.savez(out / f"{style}.npz", *model.get_weights())
(out / "histories.json").write_text(json.dumps(histories))
"""


def run_all_styles(strategy: str, logical_cpus: int | None, out: Path) -> subprocess.Popen:
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    command = [sys.executable, "-c", ALL_STYLES, strategy, json.dumps(logical_cpus), str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen, timeout: float) -> str:
    """The process's output, once it has exited 0 within `timeout` seconds."""
    try:
        output = process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    return text


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[name] for name in arrays.files]


# Float tolerance, not zero: two replicas each sum the loss and the gradient over half of every
# batch and the halves are then added, where one device sums the whole batch at once. Float
# addition is not associative, so the last bits differ, and Adam carries them on. Measured on
# this machine (2 epochs, 600 images): at most 1e-6 relative in any per-epoch loss or grad_norm,
# 3e-6 absolute in any weight; the bounds leave room for other CPUs.
RELATIVE = 1e-5


@pytest.fixture(scope="module")
def single_and_mirrored(tmp_path_factory) -> dict:
    """Every style trained on one device and mirrored on 2 logical CPUs (in parallel)."""
    runs = {
        "single": run_all_styles("none", None, tmp_path_factory.mktemp("x") / "single"),
        "mirrored": run_all_styles("mirrored", 2, tmp_path_factory.mktemp("x") / "mirrored"),
    }
    results = {}
    for name, process in runs.items():
        output = finished(process, timeout=480)
        out = Path(process.args[-1])
        histories = json.loads((out / "histories.json").read_text())
        results[name] = {
            style: (histories[style], weights(out / f"{style}.npz")) for style in STYLES
        }
        results[name]["output"] = output
    return results


def test_the_mirrored_runs_had_two_replicas_and_the_single_ones_none(single_and_mirrored):
    """Without the logical devices one replica trains, and matches the single run trivially."""
    mirrored = single_and_mirrored["mirrored"]["output"].splitlines()
    assert mirrored.count("MirroredStrategy: 2 replicas") == len(STYLES)
    assert "replicas" not in single_and_mirrored["single"]["output"]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_mirrored_on_two_devices_matches_its_single_device_run(
    single_and_mirrored, style
):
    single, single_weights = single_and_mirrored["single"][style]
    mirrored, mirrored_weights = single_and_mirrored["mirrored"][style]
    assert set(mirrored) == set(single)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert mirrored[key] == pytest.approx(single[key], rel=RELATIVE), key
    for a, b in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_clipped_grad_norm_is_the_norm_of_the_all_reduced_gradient(single_and_mirrored):
    """A replica's own share of the gradient has about half the norm: the clip must not see it."""
    single = single_and_mirrored["single"]["train_clipped"][0]["grad_norm"]
    mirrored = single_and_mirrored["mirrored"]["train_clipped"][0]["grad_norm"]
    assert single[0] > 0.5  # clip_norm is 1.0: epoch 1 is clipped at times
    assert mirrored == pytest.approx(single, rel=RELATIVE)


# One stage run of a style, as DVC runs it, keeping the final weights for the test to compare.
WORKER = """
import sys
import numpy as np
from trainstyles.pipeline.params import load_params
from trainstyles.pipeline.stage import run_stage
from trainstyles.pipeline.styles import style_module
from trainstyles.pipeline.training import train_style

style, weights_path = sys.argv[1], sys.argv[2]

def train_and_keep_weights(*args):
    model, history = style_module(style).train(*args)
    np.savez(weights_path, *model.get_weights())
    return model, history

run_stage(
    lambda: train_style(style, load_params(), train_and_keep_weights), name=style, timed=True
)
"""


def free_ports(count: int) -> list[int]:
    """Ports on the loopback interface that nothing listens on, as the system hands them out."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def host(directory: Path) -> Path:
    """A working directory as each host of a cluster has one: the same params and split data."""
    raw = YAML(typ="safe").load(REPO / "params.yaml")
    raw["train"] |= {"batch_size": 32, "steps_per_execution": 1}
    raw["distribute"] = {"strategy": "multi_worker", "logical_cpus": None}
    for style in STYLES:
        raw[style]["epochs"] = 1
    directory.mkdir()
    YAML(typ="safe").dump(raw, directory / "params.yaml")
    for part, count in (("train", 320), ("val", 64)):
        save_split(learnable_split(count, seed=len(part)), directory / "data" / "split" / part)
    return directory


def worker(directory: Path, tf_config: dict | None, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_two_workers_on_localhost_finish_and_agree_on_the_weights(tmp_path):
    style = "train_raw"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        worker(
            host(tmp_path / f"worker{index}"),
            {"cluster": cluster, "task": {"type": "worker", "index": index}},
            *("-c", WORKER, style, str(tmp_path / f"weights{index}.npz")),
        )
        for index in range(2)
    ]
    try:
        outputs = [finished(process, timeout=240) for process in workers]
    finally:
        for process in workers:
            process.kill()  # the other one, if one failed: it would wait for its peer forever

    chief, other = weights(tmp_path / "weights0.npz"), weights(tmp_path / "weights1.npz")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(chief, other, strict=True))
    stage_outputs = [f"models/{style}.keras", f"plots/{style}.csv", f"metrics/timing/{style}.json"]
    for index, output in enumerate(outputs):
        # Two independent workers with one seed would agree too: the strategy must have joined
        # them (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy).
        assert "CollectiveAllReduceStrategy: 2 replicas" in output.splitlines(), output[-2000:]
        assert "trained on 320 images" in output.splitlines()[-1], output[-2000:]
        directory = tmp_path / f"worker{index}"
        assert not (directory / ".backup").exists()
        # Only the chief (worker 0) writes the stage's outputs; the other worker wrote its own
        # to a temporary directory, now gone.
        assert [(directory / path).is_file() for path in stage_outputs] == [index == 0] * 3


@pytest.mark.parametrize("style", FIT_STYLES)
def test_the_fit_based_styles_refuse_multi_worker_in_one_line(tmp_path, style):
    """Keras 3's fit() breaks under MultiWorkerMirroredStrategy: say so instead of a traceback."""
    process = worker(host(tmp_path / "host"), None, *stage_argv(style))
    output = process.communicate(timeout=240)[0].decode()
    assert process.returncode == 1
    assert output.splitlines()[-1] == (
        f"{style}: error: distribute.strategy = 'multi_worker': Keras 3's fit() fails across "
        "workers (keras-team/keras#20585); of the styles, those that do not train through fit() "
        "train on several hosts"
    )
