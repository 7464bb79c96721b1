"""The bench's measurements of training: each style's epochs as the pipeline runs them (and
where the time goes), the PyTorch peer's, and the limit of the machine's matrix-multiply rate.
Each variant runs in a fresh process, as DVC runs a stage."""

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

from trainstyles.pipeline.data import Split, features, load_split
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import ModelParams, Params, load_params
from trainstyles.pipeline.stage import SPLIT_DIR
from trainstyles.tools.bench.figures import (
    PEER,
    XLA,
    epoch_flops,
    layer_shapes,
    variants,
)
from trainstyles.tools.bench.tables import (
    missing_peer_note,
)
from trainstyles.tools.machines import kind_name


def matmul_flops_per_second(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best float32 GEMM throughput of numpy (OpenBLAS) on (m, k)·(k, n), over `seconds` of runs.

    The best, not the median: the limit is what the hardware can do when it is not disturbed.
    """
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


SQUARE_GEMM = (2048, 2048, 2048)


def limit_figures(
    model: ModelParams, train_size: int, val_size: int, batch_size: int, peak: float
) -> dict:
    """The epoch time of a machine that did nothing but its matmuls at full GEMM speed.

    `peak` is a large square GEMM's best throughput over the run; the model's own shapes
    (batch by layer) are measured beside it, to show how much of it a batch of 128 can use.
    The limit takes the best rate any of them reached: on a shared machine a busy second can
    only lower a measured rate, never raise it.
    """
    shaped = [
        matmul_flops_per_second(batch_size, n_in, n_out) for n_in, n_out in layer_shapes(model)
    ]
    peak = max(peak, *shaped)
    flops = epoch_flops(model, train_size, val_size)
    return {
        "epoch_flops": flops,
        "gemm": "numpy float32: 2048x2048x2048 (1 s per repeat) and the model's shapes, best",
        "gemm_gflops": peak / 1e9,
        "model_shape_gflops": [value / 1e9 for value in shaped],
        "epoch_seconds": flops / peak,
    }


def timed_style(style: str, params: Params, train: Split, val: Split, epochs: int) -> dict:
    """Seconds of `epochs` epochs of `style` as the pipeline runs it: its callbacks,
    checkpoint, TensorBoard and resume points included; and where the time went.

    Every style starts each epoch through `EpochBatches.start_epoch`, so a subclass that notes
    the time there splits any style's run into epochs without touching the style's code. An
    epoch lasts from its start to the next one's: the run has a warm-up epoch first (tracing)
    and one more at the end, whose start closes the last timed epoch, so that neither tracing
    nor the teardown after training counts.

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

    class TimedEpochs(EpochBatches):
        def start_epoch(self, epoch: int) -> None:
            starts.append(time.perf_counter())
            super().start_epoch(epoch)

    def train_with_marks(params: Params, run: Run) -> tuple:
        def marked(*args, **kwargs) -> list:
            given = run.fit_callbacks(*args, **kwargs)
            callback_names[:] = [type(callback).__name__ for callback in given]
            return interleaved_marks(given, marks)

        return style_module(style).train(params, dataclasses.replace(run, fit_callbacks=marked))

    # Every epoch runs: no early stop in so few epochs, but the budget is the bench's.
    style_params = getattr(params, style).model_copy(update={"epochs": epochs + 2})
    params = params.model_copy(update={style: style_params})
    with tempfile.TemporaryDirectory(prefix=f"bench-{style}-") as work:
        backup = Backup(Path(work) / "backup", fingerprint="bench")
        logs = Path(work) / "logs"
        training.train_on(train_with_marks, params, train, val, backup, logs, TimedEpochs)
    seconds = list(np.diff(starts[1:]))
    profile = {
        "import": imported,
        "tracing": starts[1] - starts[0] - statistics.median(seconds),
        "parts": epoch_parts(starts, marks[1:], callback_names) if marks else {},
    }
    return {"epochs": seconds, "profile": profile}


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


def timed_peer(params: Params, train: Split, val: Split, epochs: int) -> list[float]:
    """The same epochs in a plain PyTorch eager loop: shuffle, forward, loss, backward, step,
    then a validation pass, as a PyTorch user would write it (threads: torch's default)."""
    import torch  # noqa: PLC0415 - optional: the `bench` extra

    torch.manual_seed(params.seed)
    layers, shapes = [], layer_shapes(params.model)
    for index, (n_in, n_out) in enumerate(shapes):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(shapes) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(features(train)), torch.from_numpy(train.labels.astype(np.int64))
    val_x = torch.from_numpy(features(val))
    val_y = torch.from_numpy(val.labels.astype(np.int64))
    batch_size, starts = params.train.batch_size, []
    for _ in range(epochs + 2):  # as timed_style: a warm-up epoch, and one to close the last
        starts.append(time.perf_counter())
        model.train()
        for index in torch.randperm(len(x)).split(batch_size):
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(bx).argmax(1) == by).sum().item()
                for bx, by in zip(val_x.split(batch_size), val_y.split(batch_size), strict=True)
            )
    del correct  # computed because a real loop reports it; not a figure of the bench
    return list(np.diff(starts[1:]))


def peer_missing() -> str | None:
    """Why the PyTorch peer cannot run, said on stderr, or None when it can. Loudly: `make bench`
    goes on when the bench extra fails to install, and the tables would show only a blank."""
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "torch":
            reason = (
                "torch is not installed (`pip install -r requirements-bench.txt`, whose +cpu "
                "wheel comes from PyTorch's CPU index)"
            )
        else:
            reason = f"torch cannot be imported ({error})"
        print(f"bench: warning: {missing_peer_note(reason)}", file=sys.stderr, flush=True)
        return reason
    return None


def timed_run(name: str, epochs: int) -> dict:
    """One variant's epochs (and a style's profile), timed in this process on data/split."""
    params = load_params()
    train, val = load_split(SPLIT_DIR / "train"), load_split(SPLIT_DIR / "val")
    if name == PEER:  # the +cpu build: the peer trains on the CPU
        devices = ["CPU:0"]
        timed = {"epochs": timed_peer(params, train, val, epochs)}
    else:
        from trainstyles.pipeline.gpu import use_devices  # noqa: PLC0415

        devices = use_devices(params.train.device)  # as a trainer would: a GPU host times its GPU
        style = name.removesuffix(XLA)
        if style != name:
            xla = params.train.model_copy(update={"jit_compile": True})
            params = params.model_copy(update={"train": xla})
        timed = timed_style(style, params, train, val, epochs)
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
    repeats: int, epochs: int, say: Callable[[str], None], xla: bool, peer: bool
) -> dict:
    """Each style, and the peer where it can run, `repeats` times, interleaved: repeat r runs
    every variant once before repeat r+1 starts, in an order that rotates. The GEMM rate is
    measured at the start of each repeat too: how fast the shared machine was just then."""
    names = variants(xla, peer)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    kinds: dict[str, str] = {}
    profiles: dict[str, list[dict]] = {name: [] for name in names if name != PEER}
    gemm_rates = []
    for repeat in range(repeats):
        gemm_rates.append(matmul_flops_per_second(*SQUARE_GEMM))
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            timed = timed_in_child(name, epochs)
            times[name].append(timed["epochs"])
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
        "profiles": profiles,
        "kinds": kinds,
        "gemm_rates": gemm_rates,  # FLOP/s, one per repeat
    }
