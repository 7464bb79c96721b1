"""The bench's measurements of training: each style's epochs as the pipeline runs them (where
the time goes, and the dispatches of an epoch), and the peers' in JAX and PyTorch. Each variant
runs in a fresh process, as DVC runs a stage, interleaved with the others."""

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainstyles.pipeline.data import Split, load_split
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import Params, load_params
from trainstyles.pipeline.stage import SPLIT_DIR
from trainstyles.tools.bench.dispatches import EagerDispatches
from trainstyles.tools.bench.figures import (
    JAX_SCAN,
    JAX_STEP,
    NO_XLA,
    PEER,
    PEERS,
    layer_shapes,
    variants,
)
from trainstyles.tools.bench.limit import SQUARE_GEMM, matmul_flops_per_second
from trainstyles.tools.bench.tables import missing_jax_note, missing_peer_note
from trainstyles.tools.machines import kind_name

TORCH_VENV = Path(".venv-torch")  # the PyTorch peer's venv, made by `make bench`
TORCH_PEER = Path(__file__).with_name("torch_peer.py")  # run by that venv's Python


def timed_style(style: str, params: Params, train: Split, val: Split, epochs: int) -> dict:
    """Seconds of `epochs` epochs of `style` as the pipeline runs it: its callbacks,
    checkpoint, TensorBoard and resume points included; and where the time went.

    Every style starts each epoch through `EpochBatches.start_epoch`, so a subclass that notes
    the time there splits any style's run into epochs without touching the style's code. An
    epoch lasts from its start to the next one's: the run has a warm-up epoch first (tracing),
    then the timed epochs, then one whose dispatches are counted (`dispatches_per_epoch`: the
    counter's own cost lands in no timed epoch), and the start of one more closes it, so that
    neither tracing nor the teardown after training counts.

    The profile (`profile`): the import of TensorFlow and Keras, the warm-up epoch's excess over
    the median (tracing), and for the fit-based styles each epoch split at marks placed around
    and between the callbacks fit() is given (`epoch_parts`).
    """
    start = time.perf_counter()
    from trainstyles.pipeline import training  # noqa: PLC0415 - the pipeline part needs no TensorFlow

    imported = time.perf_counter() - start
    from trainstyles.pipeline.data import EpochBatches  # noqa: PLC0415
    from trainstyles.pipeline.resume import Backup  # noqa: PLC0415
    from trainstyles.pipeline.styles import Run, style_module  # noqa: PLC0415

    starts: list[float] = []
    marks: list[dict] = []
    callback_names: list[str] = []
    counter = EagerDispatches()

    class TimedEpochs(EpochBatches):
        def start_epoch(self, epoch: int) -> None:
            starts.append(time.perf_counter())
            if len(starts) == epochs + 2:
                counter.start()
            elif len(starts) == epochs + 3:
                counter.stop()
            super().start_epoch(epoch)

    def train_with_marks(params: Params, run: Run) -> tuple:
        def marked(*args, **kwargs) -> list:
            given = run.fit_callbacks(*args, **kwargs)
            callback_names[:] = [type(callback).__name__ for callback in given]
            return interleaved_marks(given, marks)

        return style_module(style).train(params, dataclasses.replace(run, fit_callbacks=marked))

    # Every epoch runs: no early stop in so few epochs, but the budget is the bench's.
    style_params = getattr(params, style).model_copy(update={"epochs": epochs + 3})
    params = params.model_copy(update={style: style_params})
    with tempfile.TemporaryDirectory(prefix=f"bench-{style}-") as work:
        backup = Backup(Path(work) / "backup", fingerprint="bench")
        logs = Path(work) / "logs"
        training.train_on(train_with_marks, params, train, val, backup, logs, TimedEpochs)
    timed = starts[: epochs + 2]  # the warm-up's start, the timed epochs' and the counted one's
    seconds = list(np.diff(timed[1:]))
    profile = {
        "import": imported,
        "tracing": starts[1] - starts[0] - statistics.median(seconds),
        "parts": epoch_parts(timed, marks[1:], callback_names) if marks else {},
    }
    return {"epochs": seconds, "profile": profile, "dispatches_per_epoch": counter.count}


def interleaved_marks(callbacks: list, marks: list[dict]) -> list:
    """`callbacks` with a mark before, between and after them. Each epoch, the marks note in
    `marks` when validation began and ended and when each reached its `on_epoch_end`: fit()
    calls the callbacks in order, so the time between two marks is the callback's between them.
    """
    import keras  # noqa: PLC0415

    class Mark(keras.callbacks.Callback):
        def __init__(self, position: int, last: bool):
            super().__init__()
            self.position, self.last = position, last

        def on_epoch_begin(self, epoch, logs=None):
            if self.position == 0:
                marks.append({"ends": []})

        def on_test_begin(self, logs=None):
            if self.position == 0:
                marks[-1]["validation_begins"] = time.perf_counter()

        def on_test_end(self, logs=None):
            if self.last:
                marks[-1]["validation_ends"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            marks[-1]["ends"].append(time.perf_counter())

    marked = [Mark(0, last=not callbacks)]
    for position, callback in enumerate(callbacks, start=1):
        marked += [callback, Mark(position, last=position == len(callbacks))]
    return marked


def epoch_parts(starts: list[float], marks: list[dict], names: list[str]) -> dict[str, list]:
    """The timed epochs (those after the warm-up, each from its start to the next one's) split
    into seconds of training steps, validation, each callback's `on_epoch_end` (by class name;
    `names` in their order) and the rest (fit()'s own work between them): one list each."""
    parts: dict[str, list] = {"training steps": [], "validation": []}
    parts |= {f"{name}.on_epoch_end": [] for name in names}
    parts["the rest"] = []
    for begins, ends, mark in zip(starts[1:], starts[2:], marks, strict=False):
        measured = {
            "training steps": mark["validation_begins"] - begins,
            "validation": mark["validation_ends"] - mark["validation_begins"],
        }
        for name, before, after in zip(names, mark["ends"][:-1], mark["ends"][1:], strict=True):
            measured[f"{name}.on_epoch_end"] = after - before
        measured["the rest"] = ends - begins - sum(measured.values())
        for part, seconds in measured.items():
            parts[part].append(seconds)
    return parts


def timed_torch(params: Params, epochs: int) -> dict:
    """The PyTorch peer's epochs, run by its own venv's Python (`torch_peer.py`) on data/split,
    on as many threads as the styles' `train.intra_op_threads`."""
    config = {
        "split": str(SPLIT_DIR),
        "epochs": epochs,
        "seed": params.seed,
        "threads": params.train.intra_op_threads,
        "sizes": [n_in for n_in, _ in layer_shapes(params.model)] + [params.model.num_classes],
        "batch_size": params.train.batch_size,
        "learning_rate": params.train.learning_rate,
    }
    python = TORCH_VENV / "bin" / "python"
    child = subprocess.run(
        [str(python), str(TORCH_PEER), json.dumps(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"the PyTorch peer failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.splitlines()[-1])


def torch_missing(venv: Path = TORCH_VENV) -> str | None:
    """Why the PyTorch peer cannot run in `venv`, in one line, or None when it can: `make bench`
    makes the venv, and where torch did not install there it kept pip's error."""
    python, failed = venv / "bin" / "python", venv / "not-installed"
    if failed.is_file():
        return f"torch did not install in {venv} ({failed.read_text().strip()})"
    if not python.exists():
        return f"no {venv} (`make bench` makes it, from requirements-torch.txt)"
    tried = subprocess.run(
        [str(python), "-c", "import torch"], capture_output=True, text=True, check=False
    )
    if tried.returncode != 0:
        error = (tried.stderr.strip().splitlines() or ["no error said"])[-1]
        return f"torch cannot be imported in {venv} ({error})"
    return None


def peer_missing() -> str | None:
    """Why the PyTorch peer cannot run, said on stderr, or None when it can. Loudly: `make bench`
    goes on when the peer fails to install, and the tables would show only a blank."""
    reason = torch_missing()
    if reason:
        print(f"bench: warning: {missing_peer_note(reason)}", file=sys.stderr, flush=True)
    return reason


def jax_missing() -> str | None:
    """Why the JAX peers cannot run, said on stderr, or None when they can."""
    try:
        import jax  # noqa: F401, PLC0415 - optional: the `bench` extra
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "jax":
            reason = "jax is not installed (`make bench` installs requirements-bench.txt)"
        else:
            reason = f"jax cannot be imported ({error})"
        print(f"bench: warning: {missing_jax_note(reason)}", file=sys.stderr, flush=True)
        return reason
    return None


def timed_run(name: str, epochs: int) -> dict:
    """One variant's epochs, its dispatches (and a style's profile), timed on data/split."""
    params = load_params()
    if name == PEER:  # its venv's torch may be a CUDA build: it trains on the CPU all the same
        devices = ["CPU:0"]
        timed = timed_torch(params, epochs)
    elif name in (JAX_STEP, JAX_SCAN):  # CPU jaxlib
        from trainstyles.tools.bench import jax_peer  # noqa: PLC0415

        devices = ["CPU:0"]
        jax_peer.use_cores(params.train.intra_op_threads)
        train, val = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
        timed = jax_peer.timed_jax(name, params, train, val, epochs)
    else:
        # TensorFlow and Keras load here: pipeline.gpu imports TensorFlow too, so timed_style's
        # own measure of the import would find them loaded.
        start = time.perf_counter()
        from trainstyles.pipeline import training  # noqa: F401, PLC0415
        from trainstyles.pipeline.gpu import use_devices  # noqa: PLC0415

        imported = time.perf_counter() - start
        devices = use_devices(params.train.device)  # as a trainer would: a GPU host times its GPU
        style = name.removesuffix(NO_XLA)
        if style != name:
            plain = params.train.model_copy(update={"jit_compile": False})
            params = params.model_copy(update={"train": plain})
        train, val = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
        timed = timed_style(style, params, train, val, epochs)
        timed["profile"]["import"] = imported
    return timed | {"measured_on": kind_name(fingerprint(params.train.intra_op_threads, devices))}


def timed_in_child(name: str, epochs: int) -> dict:
    """`timed_run` in a fresh process, as DVC runs a stage: no variant inherits another's
    thread pools or memory.

    PyTorch's OpenMP threads spin while they wait for each other, so any other process on a
    core stalls every step; OMP_WAIT_POLICY=PASSIVE (sleep, don't spin) keeps the peer at its
    best, not at its collapse (docs/bench.md).
    """
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"} if name == PEER else None
    child = subprocess.run(
        [sys.executable, "-m", "trainstyles.tools.bench", "--run", name, "--epochs", str(epochs)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"timing {name} failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.splitlines()[-1])


def epoch_figures(
    repeats: int, epochs: int, say: Callable[[str], None], without_xla: bool, peers: list[str]
) -> dict:
    """Each style, and the `peers` that can run, `repeats` times, interleaved: repeat r runs
    every variant once before repeat r+1 starts, in an order that rotates. The GEMM rate is
    measured at the start of each repeat too: how fast the shared machine was just then."""
    names = variants(without_xla, peers)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    dispatches: dict[str, list[int]] = {name: [] for name in names}
    kinds: dict[str, str] = {}
    profiles: dict[str, list[dict]] = {name: [] for name in names if name not in PEERS}
    gemm_rates, torch_version = [], None
    for repeat in range(repeats):
        gemm_rates.append(matmul_flops_per_second(*SQUARE_GEMM))
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            timed = timed_in_child(name, epochs)
            times[name].append(timed["epochs"])
            dispatches[name].append(timed["dispatches_per_epoch"])
            torch_version = timed.get("torch", torch_version)  # from the peer's own venv
            kinds[name] = timed["measured_on"]
            if "profile" in timed:
                profiles[name].append(timed["profile"])
            median = statistics.median(times[name][-1])
            say(f"repeat {repeat + 1}/{repeats}: {name} {median:.2f} s/epoch")
    train, val = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
    return {
        "train_size": len(train),
        "val_size": len(val),
        "times": times,
        "dispatches": dispatches,
        "profiles": profiles,
        "kinds": kinds,
        "gemm_rates": gemm_rates,  # FLOP/s, one per repeat
        "torch_version": torch_version,
    }
