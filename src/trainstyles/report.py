"""The comparison report: the four styles side by side, their curves as PNGs, how much each style
hands to Keras, and what changed against a git revision. The page is also the pull request's
comment body (CML uploads the PNGs it links).

    python -m trainstyles.report [--against REV] [--out report]

It reads what the pipeline wrote (metrics, curves, confusion data) and DVC's own comparison
(`dvc metrics diff`, `dvc params diff`); it trains nothing and never imports TensorFlow.
"""

import argparse
import ast
import csv
import io
import json
import subprocess
import sys
import tokenize
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: files only, no display or GUI backend
from matplotlib.ticker import MaxNLocator

from trainstyles import STYLES, StageError
from trainstyles.data import CLASS_NAMES
from trainstyles.outputs import read_history
from trainstyles.stage import METRICS_DIR, PLOTS_DIR, TIMING_DIR, run_stage

STYLE_MODULES = Path(__file__).parent / "styles"
# Equal styles draw equal curves (train_fit and train_step do): a thick line under a dashed one.
LINES = {
    "train_fit": {"linewidth": 4, "alpha": 0.5},
    "train_step": {"linestyle": "--"},
    "train_raw": {"linestyle": "-."},
    "train_clipped": {"linestyle": ":"},
}
# The tutorial's "choosing your altitude": what each style leaves to Keras, and what it writes.
ALTITUDE = {
    "train_fit": (
        "everything: the loop, the step, metrics, callbacks, progress bar",
        "compile() and the list of callbacks",
    ),
    "train_step": (
        "epochs, callbacks, metric bookkeeping, progress bar, distribution",
        "one training step: forward, compute_loss, gradients, apply, metrics",
    ),
    "train_raw": (
        "layers, the loss, the optimizer's update rule, metric arithmetic",
        "the epoch and batch loops, metric resets, validation, the best checkpoint, "
        "Progbar and TensorBoard calls",
    ),
    "train_clipped": (
        "as train_step",
        "the train_step with tf.clip_by_global_norm and a grad_norm metric",
    ),
}


def code_lines(module: Path) -> int:
    """Lines of a module that hold code: not blank, not only a comment, not a docstring."""
    source = module.read_text()
    lines = {
        token.start[0]
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
        and token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    }
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, documented) and ast.get_docstring(node, clean=False) is not None:
            lines -= set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    return len(lines)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"cannot read {path} ({error}): run `dvc repro` first") from None


def number(value, digits: int = 4, sign: str = "") -> str:
    """A figure as the tables show it; params diffs also bring strings, lists and booleans."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return f"{value:{sign},.0f}"
    if isinstance(value, float):
        return f"{value:{sign}.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def styles_table(results: Mapping[str, dict], timing: Mapping[str, dict]) -> str:
    header = ["style", "test accuracy", "test loss", "epochs", "best epoch", "seconds", "samples/s"]
    rows = [
        [
            f"`{style}`",
            number(results[style]["test_accuracy"]),
            number(results[style]["test_loss"]),
            number(results[style]["epochs_run"]),
            number(results[style]["best_epoch"]),
            number(timing[style]["train_seconds"], 1),
            number(timing[style]["samples_per_second"]),
        ]
        for style in STYLES
    ]
    return table(header, rows)


def altitude_table() -> str:
    header = ["style", "hands to Keras", "writes itself", "lines of code in its module"]
    rows = [
        [f"`{style}`", handed, written, str(code_lines(STYLE_MODULES / f"{style[6:]}.py"))]
        for style, (handed, written) in ALTITUDE.items()
    ]
    return (
        table(header, rows) + "\n\n`train_step` and `train_clipped` also call `fit.py`'s "
        "`fit_with_zoo`, the same fit() and callback zoo: overriding train_step keeps all else."
    )


def dvc_diff(kind: str, revision: str) -> dict:
    """`dvc metrics diff` or `dvc params diff` against `revision`, as DVC computes it."""
    command = [sys.executable, "-m", "dvc", kind, "diff", revision, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        problem = " ".join((result.stderr or result.stdout).split())
        raise StageError(f"dvc {kind} diff {revision} failed: {problem}")
    return json.loads(result.stdout or "{}")


def diff_rows(diff: Mapping[str, Mapping[str, dict]]) -> list[list[str]]:
    """One row per changed value: file, key, before, after, and the change where it is a number."""
    return [
        [
            f"`{path}`",
            f"`{key}`",
            number(change.get("old")),
            number(change.get("new")),
            number(change.get("diff"), sign="+"),
        ]
        for path, changes in sorted(diff.items())
        for key, change in sorted(changes.items())
    ]


def diff_section(revision: str) -> str:
    header = ["file", "key", revision, "workspace", "change"]
    sections = [f"## Against `{revision}`"]
    for kind, title in (("params", "Params changed"), ("metrics", "Metrics changed")):
        rows = diff_rows(dvc_diff(kind, revision))
        sections.append(f"**{title}**\n\n" + (table(header, rows) if rows else "none"))
    return "\n\n".join(sections)


def plot_curves(histories: Mapping[str, dict], path: Path) -> None:
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    for style, history in histories.items():
        epochs = range(1, len(history["val_loss"]) + 1)
        axes[0].plot(epochs, history["val_accuracy"], label=style, **LINES[style])
        axes[1].plot(epochs, history["val_loss"], label=style, **LINES[style])
    for ax, title in zip(axes, ("validation accuracy", "validation loss"), strict=True):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    figure.savefig(path, dpi=90)


def plot_training(histories: Mapping[str, dict], path: Path) -> None:
    figure = Figure(figsize=(11, 4))
    rate, norm = figure.subplots(1, 2)
    for style, history in histories.items():
        epochs = range(1, len(history["learning_rate"]) + 1)
        lines = {"label": style, "drawstyle": "steps-post", **LINES[style]}
        rate.plot(epochs, history["learning_rate"], **lines)
    rate.set(title="learning rate each epoch trained with", xlabel="epoch", yscale="log")
    rate.legend()
    clipped = histories["train_clipped"]
    epochs = range(1, len(clipped["grad_norm"]) + 1)
    norm.plot(epochs, clipped["grad_norm"], marker=".", label="grad_norm before clipping")
    norm.plot(epochs, clipped["clip_norm"], linestyle="--", label="clip_norm")
    norm.set(title="train_clipped: mean global gradient norm", xlabel="epoch")
    for ax in (rate, norm):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    norm.legend()
    figure.savefig(path, dpi=90)


def confusion_matrix(path: Path) -> np.ndarray:
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    counts = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=int)
    with path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            counts[index[row["actual"]], index[row["predicted"]]] += 1
    return counts


def plot_confusion(path: Path) -> None:
    figure = Figure(figsize=(11, 10), layout="constrained")
    for ax, style in zip(figure.subplots(2, 2).flat, STYLES, strict=True):
        counts = confusion_matrix(PLOTS_DIR / "confusion" / f"{style}.csv")
        ax.imshow(counts, cmap="Blues")
        for (actual, predicted), count in np.ndenumerate(counts):
            ax.text(predicted, actual, count, ha="center", va="center", fontsize=7)
        ticks = range(len(CLASS_NAMES))
        ax.set_xticks(ticks, CLASS_NAMES, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, CLASS_NAMES, fontsize=7)
        ax.set(title=style, xlabel="predicted", ylabel="actual")
    figure.savefig(path, dpi=90)


def write_report(out: Path, revision: str | None) -> Path:
    """The Markdown page and its PNGs in `out`; returns the page's path."""
    results = {style: read_json(METRICS_DIR / f"{style}.json") for style in STYLES}
    timing = {style: read_json(TIMING_DIR / f"{style}.json") for style in STYLES}
    comparison = read_json(METRICS_DIR / "comparison.json")
    histories = {style: read_history(PLOTS_DIR / f"{style}.csv") for style in STYLES}
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(histories, out / "curves.png")
    plot_training(histories, out / "training.png")
    plot_confusion(out / "confusion.png")
    agreement = table(
        ["pair", "same prediction", "identical weights"],
        [
            [f"`{pair}`", number(share), number(comparison["identical_weights"][pair])]
            for pair, share in comparison["agreement"].items()
        ],
    )
    clipped = results["train_clipped"]
    parts = [
        "# trainstyles: one model, four ways of training",
        styles_table(results, timing),
        f"`train_clipped`: the pre-clip gradient norm went from {clipped['grad_norm_first']:.2f} "
        f"in epoch 1 to {clipped['grad_norm_last']:.2f} in epoch {clipped['epochs_run']}.",
        "![Validation accuracy and loss per epoch](curves.png)",
        "![Learning rate per epoch; gradient norm against the clip](training.png)",
        "## How the styles agree on the test set\n\n" + agreement,
        "![Test confusion matrices](confusion.png)",
        "## Choosing your altitude\n\n" + altitude_table(),
    ]
    if revision:
        parts.append(diff_section(revision))
    page = out / "report.md"
    page.write_text("\n\n".join(parts) + "\n")
    return page


def main() -> str:
    parser = argparse.ArgumentParser(prog="python -m trainstyles.report", description=__doc__)
    parser.add_argument("--against", metavar="REV", help="git revision to diff metrics against")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    args = parser.parse_args()
    page = write_report(args.out, args.against)
    against = f", diffed against {args.against}" if args.against else ""
    return f"wrote {page} and its PNGs{against}"


if __name__ == "__main__":
    run_stage(main)
