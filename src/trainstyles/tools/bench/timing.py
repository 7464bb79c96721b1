"""`make bench`: how fast each style trains and the pipeline runs, against a peer and the limit.

Three yardsticks, measured in the same run on the same machine (docs/bench.md: how to read them):
- the peer: the same MLP, data, batch size and optimizer in a plain PyTorch eager loop, run
  interleaved with the styles so that each style's ratio compares runs minutes apart at most;
- the limit: the FLOPs of an epoch divided by the machine's measured matrix-multiply throughput;
- the pipeline: each stage's wall time and peak resident memory in a full `dvc repro -f`, and
  the time of a `dvc repro` with nothing to do.
Each style is timed as params.yaml trains it and again with XLA (`train.jit_compile: true`).

    python -m trainstyles.tools.bench [--epochs 3] [--repeats 3] [--no-pipeline] [--no-xla]
                                      [--out F]
    python -m trainstyles.tools.bench --page      (docs/bench.md's tables from bench/results.json)

Either way docs/bench.md's tables are rewritten from bench/results.json, so nobody types a
figure; results written elsewhere (--out) leave the page alone unless --doc names one.
"""

import argparse
import dataclasses
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from trainstyles.pipeline.data import IMAGE_SIZE, Split, features, load_split
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import STYLES, ModelParams, Params, load_params
from trainstyles.pipeline.stage import MACHINE_DIR, METRICS_DIR, SPLIT_DIR
from trainstyles.tools.commands import copy_worktree
from trainstyles.tools.machines import kind_name
from trainstyles.tools.pages import BENCH_PAGE, replace_block, table

PEER = "pytorch"
XLA = " (XLA)"  # a style's contender with train.jit_compile true: "train_fit (XLA)"
RESULTS = Path("bench/results.json")


# --- The arithmetic: pure, and unit-tested --------------------------------------------------------


def layer_shapes(model: ModelParams) -> list[tuple[int, int]]:
    """(inputs, outputs) of each Dense layer: 784 → 256 → 128 → 10 for the tutorial."""
    sizes = [IMAGE_SIZE, *model.hidden_units, model.num_classes]
    return list(itertools.pairwise(sizes))


def training_flops_per_sample(model: ModelParams) -> int:
    """Matmul FLOPs (2 per multiply-add) of one sample's forward and backward pass.

    Forward: x·W per layer. Backward: the weight gradient xᵀ·δ per layer, and the input gradient
    δ·Wᵀ for every layer but the first (nothing needs the gradient of the pixels). Bias adds,
    activations and the loss are O(units), three orders of magnitude fewer: left out.
    """
    shapes = layer_shapes(model)
    forward = sum(2 * n_in * n_out for n_in, n_out in shapes)
    input_gradients = sum(2 * n_in * n_out for n_in, n_out in shapes[1:])
    return 2 * forward + input_gradients


def inference_flops_per_sample(model: ModelParams) -> int:
    return sum(2 * n_in * n_out for n_in, n_out in layer_shapes(model))


def epoch_flops(model: ModelParams, train_size: int, val_size: int) -> int:
    """An epoch as every contender runs it: train on the training set, then validate."""
    return train_size * training_flops_per_sample(model) + val_size * inference_flops_per_sample(
        model
    )


def spread(values: Sequence[float]) -> dict:
    """Median and range: with a machine shared by others, the mean would chase the outliers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratios(times: dict[str, list[list[float]]], reference: str) -> dict[str, list[float]]:
    """Per repeat, each contender's median epoch divided by the reference's median epoch of
    that same repeat: a slow minute on the machine slows both sides of a pair."""
    return {
        name: [
            statistics.median(mine) / statistics.median(theirs)
            for mine, theirs in zip(runs, times[reference], strict=True)
        ]
        for name, runs in times.items()
        if name != reference
    }


Rows = list[tuple[str, ...]]
Table = tuple[str, Rows]  # a caption that names the kind of machine, and the rows


def machine_kind(where: dict) -> str:
    """The kind of the bench's machine (`machine.kind_name`: its CPU's). Results from before
    the bench recorded the fingerprint name it as well as they can: by the CPU's model alone
    ("AMD EPYC"), without its family/model."""
    return where.get("kind") or where["cpu"]


def measured_on(results: dict, figures: dict) -> str:
    """The kind of machine that measured `figures`: theirs, where the bench recorded it, else
    the bench machine's kind, on which older results measured everything."""
    return figures.get("measured_on") or machine_kind(results["machine"])


def with_kinds(title: str, rows: Rows, kinds: list[str]) -> Table:
    """A table whose caption names the kind of machine its figures were measured on; where
    they were measured on several (a GPU's styles beside the CPU's peer and limit), a last
    column names each row's."""
    if len(set(kinds)) == 1:
        return f"{title}, measured on {kinds[0]}:", rows
    header, *body = rows
    named = [(*row, kind) for row, kind in zip(body, kinds, strict=True)]
    return f"{title}, each row measured on the kind it names:", [(*header, "measured on"), *named]


def missing_peer_note(reason: str) -> str:
    return f"no PyTorch peer: {reason}; the x {PEER} column is blank"


def epoch_table(results: dict) -> str:
    """The printed table: one row per contender, then the limit; and why the peer is missing."""
    missing = results.get("peer_missing")
    note = f"\n{sentence(missing_peer_note(missing))}" if missing else ""
    return printed(epoch_rows(results)) + note


def epoch_rows(results: dict) -> Table:
    rows = [("", "s/epoch median (min-max)", "samples/s", f"x {PEER} (min-max)", "x limit")]
    limit = results["limit"]["epoch_seconds"]
    for name, figures in results["epochs"].items():
        seconds = figures["seconds_per_epoch"]
        ratio = results["ratio_to_peer"].get(name)
        rows.append(
            (
                name,
                f"{seconds['median']:.2f} ({seconds['min']:.2f}-{seconds['max']:.2f})",
                f"{figures['samples_per_second']:,.0f}",
                f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "",
                f"{seconds['median'] / limit:.2f}",
            )
        )
    rows.append(("limit", f"{limit:.2f}", "", "", "1.00"))
    figures = [*results["epochs"].values(), results["limit"]]
    return with_kinds("Epochs", rows, [measured_on(results, each) for each in figures])


def profile_table(results: dict) -> str:
    return printed(profile_rows(results))


def profile_rows(results: dict) -> Table:
    """Where each style's time goes, in median seconds: per run, the import and the tracing;
    per epoch, the parts of a fit-based style's epoch. The raw loop has no callbacks to mark:
    its epoch is not split."""
    profiles = results.get("profile") or {}
    parts = list(dict.fromkeys(part for p in profiles.values() for part in p["parts"]))
    rows = [("seconds (median)", *profiles)]
    rows.append(
        ("per run: import TensorFlow, Keras", *(f"{p['import']:.2f}" for p in profiles.values()))
    )
    rows.append(
        (
            "per run: tracing (warm-up epoch's excess)",
            *(f"{p['tracing']:.2f}" for p in profiles.values()),
        )
    )
    for part in parts:
        rows.append(
            (
                f"per epoch: {part}",
                *(
                    f"{p['parts'][part]:.3f}" if part in p["parts"] else ""
                    for p in profiles.values()
                ),
            )
        )
    kinds = [measured_on(results, results["epochs"][name]) for name in profiles]
    if len(set(kinds)) > 1:  # a column per contender: a row names each one's kind
        return "Profiles, each column measured on the kind it names:", [
            rows[0],
            ("measured on", *kinds),
            *rows[1:],
        ]
    return with_kinds("Profiles", rows, kinds)


def fixed_overhead(results: dict) -> dict | None:
    """What a full `dvc repro -f` spends beyond its epochs: the run's wall time less each style's
    epochs at that style's median epoch (imports, tracing, data loading, evaluate, DVC itself).
    None for results from before the bench counted the run's epochs."""
    pipeline = results.get("pipeline") or {}
    if "epochs_run" not in pipeline:
        return None
    epochs = pipeline["epochs_run"]
    epoch_seconds = sum(
        count * results["epochs"][style]["seconds_per_epoch"]["median"]
        for style, count in epochs.items()
    )
    return {
        "seconds": pipeline["full_repro_seconds"] - epoch_seconds,
        "epochs": sum(epochs.values()),
    }


def pipeline_table(results: dict) -> str:
    return printed(pipeline_rows(results))


def pipeline_rows(results: dict) -> Table:
    """Each stage on the kind it ran on, the whole run on the kind that trained, and the no-op
    run, which only hashes files, on the bench's machine."""
    pipeline = results["pipeline"]
    rows = [("stage", "wall s", "peak RSS MB")]
    kinds = []
    for stage, figures in pipeline["stages"].items():
        rows.append((stage, f"{figures['seconds']:.1f}", f"{figures['peak_rss_mb']:.0f}"))
        kinds.append(measured_on(results, figures))
    run_kind = measured_on(results, pipeline)
    full = f"dvc repro -f (all {len(pipeline['stages'])})"
    rows.append((full, f"{pipeline['full_repro_seconds']:.1f}", ""))
    kinds.append(run_kind)
    overhead = fixed_overhead(results)
    if overhead:
        beyond = f"fixed overhead: the above less its {overhead['epochs']} epochs at their medians"
        rows.append((beyond, f"{overhead['seconds']:.1f}", ""))
        kinds.append(run_kind)
    noop = pipeline["noop_repro_seconds"]
    rows.append(
        ("dvc repro (no-op)", f"{noop['median']:.2f} ({noop['min']:.2f}-{noop['max']:.2f})", "")
    )
    kinds.append(machine_kind(results["machine"]))
    return with_kinds("Pipeline", rows, kinds)


def printed(table: Table) -> str:
    caption, rows = table
    return f"{caption}\n{format_rows(rows)}"


def format_rows(rows: Rows) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Rows) -> str:
    header, *body = rows
    return table(list(header), [list(row) for row in body])


def markdown(captioned: Table) -> str:
    caption, rows = captioned
    return f"{caption}\n\n{markdown_table(rows)}"


def sentence(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}."


def page_text(results: dict, source: Path = RESULTS) -> str:
    """docs/bench.md's generated block: what was measured on what, then the tables."""
    where, setup = results["machine"], results["setup"]
    runs = next(iter(results["times"].values()))
    tools = ", ".join(
        f"{label} {where[key]}"
        for key, label in [("tensorflow", "TensorFlow"), ("keras", "Keras"), ("torch", "PyTorch")]
        if key in where
    )
    seen = ", ".join(f"{rate:.0f}" for rate in where["gemm_gflops_seen"])
    limit = results["limit"]
    shapes = ", ".join(f"{rate:.0f}" for rate in limit["model_shape_gflops"])
    if "fingerprint" in where:
        kind = machine_kind(where)
        graphics = ", ".join(gpu["name"] for gpu in where["fingerprint"]["gpu"]) or "none"
    else:  # results from before the bench recorded its fingerprint
        kind, graphics = f"{machine_kind(where)} (family/model not recorded)", where["gpu"]
    parts = [
        f"Measured by `make bench` on {kind}, {where['cores']} cores (load average "
        f"{where['load_average_at_start']:.1f} at the start), GPU: {graphics}; {tools}, "
        f"Python {where['python']}. {setup['train_size']:,} training images, batch "
        f"{setup['batch_size']}; {len(runs)} repeats of {len(runs[0])} timed epochs per "
        "contender. Square GEMM rates during the run, in order: "
        f"{seen} GFLOP/s. Every epoch's seconds: `{source}`.",
        markdown(epoch_rows(results)),
        f"The limit: {limit['epoch_flops'] / 1e9:.1f} GFLOP per epoch at "
        f"{limit['gemm_gflops']:.0f} GFLOP/s, the best rate of the run (the model's own "
        f"shapes, batch by each layer, reached {shapes} GFLOP/s).",
    ]
    if any(name.endswith(XLA) for name in results["epochs"]):
        parts.insert(
            2,
            f"The rows marked{XLA} train with `train.jit_compile: true`, which turns "
            "TensorFlow's op determinism off ([reproducibility.md](reproducibility.md)).",
        )
    if results.get("peer_missing"):
        parts.insert(2, sentence(missing_peer_note(results["peer_missing"])))
    if results.get("profile"):
        parts.append(
            "Where the time goes: each style's profile, from the same runs. Per run, the "
            "import of TensorFlow and Keras and the tracing; per epoch of a fit-based style, "
            "the training steps, the validation, each callback's epoch end, and the rest "
            "(fit()'s own work between them). The raw loop has no callbacks to mark."
        )
        parts.append(markdown(profile_rows(results)))
    if results.get("pipeline"):
        parts.append(markdown(pipeline_rows(results)))
    else:
        parts.append("The pipeline was not timed (`--no-pipeline`).")
    return "\n\n".join(parts)


def write_page(results: dict, page: Path = BENCH_PAGE, source: Path = RESULTS) -> bool:
    """Rewrite the page's `<!-- bench -->` block from the results; False if it has none."""
    return replace_block(page, "bench", page_text(results, source))


# --- The limit: the machine's matrix-multiply throughput ------------------------------------------


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


# --- The styles, timed epoch by epoch -------------------------------------------------------------


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
    and between the frame's callbacks (`epoch_parts`).
    """
    start = time.perf_counter()
    from trainstyles.pipeline import training  # noqa: PLC0415 - the pipeline part needs no TensorFlow

    imported = time.perf_counter() - start
    from trainstyles.pipeline.data import EpochBatches  # noqa: PLC0415
    from trainstyles.pipeline.resume import Backup  # noqa: PLC0415
    from trainstyles.pipeline.styles import style_module  # noqa: PLC0415

    starts: list[float] = []
    marks: list[dict] = []
    callback_names: list[str] = []

    class TimedEpochs(EpochBatches):
        def start_epoch(self, epoch: int) -> None:
            starts.append(time.perf_counter())
            super().start_epoch(epoch)

    def train_with_marks(params: Params, run):
        def callbacks(*args, **kwargs):
            frame = run.fit_callbacks(*args, **kwargs)
            callback_names[:] = [type(callback).__name__ for callback in frame]
            return interleaved_marks(frame, marks)

        return style_module(style).train(params, dataclasses.replace(run, fit_callbacks=callbacks))

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
    """One contender's epochs (and a style's profile), timed in this process on data/split."""
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


def contenders(xla: bool, peer: bool) -> list[str]:
    """Each style, each again with XLA where `xla`, and the peer where it can run."""
    return [*STYLES] + [style + XLA for style in STYLES if xla] + [PEER] * peer


def timed_in_child(name: str, epochs: int) -> dict:
    """`timed_run` in a fresh process, as DVC runs a stage: no contender inherits another's
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
    every contender once before repeat r+1 starts, in an order that rotates. The GEMM rate is
    measured at the start of each repeat too: how fast the shared machine was just then."""
    names = contenders(xla, peer)
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


# --- The pipeline: stages' wall time and peak memory, full and no-op repro ------------------------


def peak_rss_kb(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux's VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def stage_of(command_line: list[str]) -> str | None:
    """The stage a process runs, from its command line: the style that `stages/train.py` is
    given, or the script's name (`stages/evaluate.py`: evaluate); None for other processes."""
    for index, arg in enumerate(command_line):
        if arg.startswith("stages/"):
            return next(iter(command_line[index + 1 :]), None) or Path(arg).stem
    return None


def watched_repro(repo: Path, env: dict) -> tuple[float, dict]:
    """`dvc repro -f` in `repo`: its wall time, and each stage's wall time and peak RSS.

    DVC runs each stage as `python stages/<script>.py [style]`; polling the process tree every 50 ms
    finds it, times it from first to last sight and keeps the highest VmHWM it showed. The
    high-water mark only grows, so a sample in the stage's last 50 ms is all it can miss.
    """
    import psutil  # noqa: PLC0415

    stages: dict[str, dict] = {}
    start = time.perf_counter()
    dvc = subprocess.Popen(
        [Path(sys.executable).parent / "dvc", "repro", "-f"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    root = psutil.Process(dvc.pid)
    while dvc.poll() is None:
        now = time.perf_counter()
        try:
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                stage = stage_of(child.cmdline())
            except psutil.Error:
                continue
            if not stage:
                continue
            seen = stages.setdefault(stage, {"first": now, "last": now, "rss_kb": 0})
            seen["last"] = now
            seen["rss_kb"] = max(seen["rss_kb"], peak_rss_kb(child.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if dvc.returncode != 0:
        raise RuntimeError(f"dvc repro -f failed in {repo}:\n{dvc.stderr.read()}")
    return seconds, {
        stage: {"seconds": seen["last"] - seen["first"], "peak_rss_mb": seen["rss_kb"] / 1024}
        for stage, seen in stages.items()
    }


def pipeline_figures(
    repo: Path, say: Callable[[str], None], cpu_kind: str, noop_repeats: int = 5
) -> dict:
    """The whole pipeline forced once in a copy of `repo`, then `dvc repro` with nothing to do.
    Each stage is measured on the kind its trainer recorded, or on `cpu_kind`, the CPU's."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        copy = Path(work)
        copy_worktree(repo, copy)
        gemm = matmul_flops_per_second(*SQUARE_GEMM)  # how fast the machine was just then
        say(f"dvc repro -f in a copy of the repository ({copy}) ...")
        full, stages = watched_repro(copy, env)
        say(f"dvc repro -f: {full:.1f} s")
        # How many epochs each style trained in that run, for its fixed overhead.
        epochs_run = {
            style: json.loads((copy / METRICS_DIR / f"{style}.json").read_text())["epochs_run"]
            for style in STYLES
        }
        trained_on = {
            style: kind_name(json.loads((copy / MACHINE_DIR / f"{style}.json").read_text()))
            for style in STYLES
        }
        # evaluate asks for the devices the trainers asked for (train.device): it runs where
        # they ran. prepare and split are NumPy's, on the CPU.
        run_kind = trained_on[STYLES[0]]
        kinds = trained_on | {"evaluate": run_kind}
        for stage, figures in stages.items():
            figures["measured_on"] = kinds.get(stage, cpu_kind)
        noop = []
        for _ in range(noop_repeats):
            start = time.perf_counter()
            subprocess.run(
                [bin_dir / "dvc", "repro"], cwd=copy, env=env, capture_output=True, check=True
            )
            noop.append(time.perf_counter() - start)
    return {
        "full_repro_seconds": full,
        "epochs_run": epochs_run,
        "stages": stages,
        "measured_on": run_kind,
        "noop_repro_seconds": spread(noop),
        "gemm_flops_per_second": gemm,
    }


# --- Putting it together --------------------------------------------------------------------------


def machine(intra_op_threads: int) -> dict:
    """What the figures were measured on, and how busy it was when the bench started: the
    fingerprint a trainer records, and its kind: the CPU's, since the bench's own process (the
    limit's GEMMs, the no-op `dvc repro`) uses no GPU."""
    here = fingerprint(intra_op_threads)
    return {
        "fingerprint": here,
        "kind": kind_name(here),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def summarise(params: Params, measured: dict, limit: dict) -> dict:
    """Per contender: seconds per epoch and samples per second (median and range over all its
    timed epochs), the paired ratios to the peer, and the limit."""
    times, train_size = measured["times"], measured["train_size"]
    epochs = {}
    for name, runs in times.items():
        flat = [seconds for run in runs for seconds in run]
        epochs[name] = {
            "seconds_per_epoch": spread(flat),
            "samples_per_second": train_size / statistics.median(flat),
            "measured_on": measured["kinds"][name],
        }
    ratios = paired_ratios(times, PEER) if PEER in times else {}
    return {
        "epochs": epochs,
        "profile": {
            name: profile_medians(runs) for name, runs in measured.get("profiles", {}).items()
        },
        "ratio_to_peer": {name: spread(values) for name, values in ratios.items()},
        "limit": limit,
        "times": times,
        "peer_missing": measured["peer_missing"],
        "setup": {
            "train_size": train_size,
            "val_size": measured["val_size"],
            "batch_size": params.train.batch_size,
            "train": params.train.model_dump(),
        },
    }


def profile_medians(runs: list[dict]) -> dict:
    """One contender's profile over its repeats: the median import and tracing of a run, and
    the median seconds of each part of an epoch over all its timed epochs."""
    parts = runs[0]["parts"]
    return {
        "import": statistics.median(run["import"] for run in runs),
        "tracing": statistics.median(run["tracing"] for run in runs),
        "parts": {
            part: statistics.median(seconds for run in runs for seconds in run["parts"][part])
            for part in parts
        },
    }


def versions(peer: bool) -> dict:
    """The packages that did the work, read from their metadata: no TensorFlow in this process."""
    names = ["tensorflow", "keras", "numpy"] + (["torch"] if peer else [])
    return {name: importlib.metadata.version(name) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the dvc repro timings")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    parser.add_argument(
        "--page", action="store_true", help="measure nothing: rewrite the page from --out"
    )
    parser.add_argument(
        "--doc", type=Path, help=f"the page to rewrite ({BENCH_PAGE} when --out is {RESULTS})"
    )
    parser.add_argument("--no-xla", action="store_true", help="skip the styles' XLA timings")
    parser.add_argument("--run", choices=contenders(xla=True, peer=True), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Results written elsewhere (a trial of a lever) leave the page, which shows RESULTS, alone.
    page = args.doc or (BENCH_PAGE if args.out == RESULTS else None)
    if args.run:
        print(json.dumps(timed_run(args.run, args.epochs)))
        return 0
    if args.page:
        if not args.out.is_file():
            print(f"bench: error: no {args.out}: run `make bench` first", file=sys.stderr)
            return 1
        return report_page(json.loads(args.out.read_text()), args.out, page)

    def say(line: str) -> None:
        print(f"bench: {line}", flush=True)

    params = load_params()
    missing_peer = peer_missing()
    results = {"machine": machine(params.train.intra_op_threads)}
    cpu_kind = results["machine"]["kind"]
    pipeline = None if args.no_pipeline else pipeline_figures(Path.cwd(), say, cpu_kind)
    peer = not missing_peer
    measured = epoch_figures(args.repeats, args.epochs, say, xla=not args.no_xla, peer=peer)
    measured |= {"peer_missing": missing_peer}
    # A shared machine runs at the speed its neighbours leave it: the square GEMM's rate before
    # the pipeline and at each repeat shows how fast it was, and the best of them is the limit's.
    gemm_seen = ([pipeline["gemm_flops_per_second"]] if pipeline else []) + measured["gemm_rates"]
    limit = limit_figures(
        params.model,
        measured["train_size"],
        measured["val_size"],
        params.train.batch_size,
        max(gemm_seen),
    )
    results |= summarise(params, measured, limit | {"measured_on": cpu_kind})
    results["pipeline"] = pipeline
    results["machine"] |= versions(peer) | {"gemm_gflops_seen": [rate / 1e9 for rate in gemm_seen]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{epoch_table(results)}")
    print(f"\n{profile_table(results)}")
    seen = ", ".join(f"{rate:.0f}" for rate in results["machine"]["gemm_gflops_seen"])
    print(f"square GEMM rates during the run, in order: {seen} GFLOP/s")
    if pipeline:
        print(f"\n{pipeline_table(results)}")
    print(f"\nwrote {args.out}")
    return report_page(results, args.out, page)


def report_page(results: dict, source: Path, page: Path | None) -> int:
    if page is None:
        return 0
    if not write_page(results, page, source):
        print(f"bench: error: {page} has no <!-- bench --> block to write", file=sys.stderr)
        return 1
    print(f"bench: wrote {page}'s tables from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
