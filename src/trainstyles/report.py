"""The comparison report: the styles side by side, their curves as PNGs, how much each style
hands to Keras, the seed sweep's noise and the styles compared within it, and what changed
against a git revision, each change labelled beyond or within noise. The page is also the pull
request's comment body (CML uploads the PNGs it links).

    python -m trainstyles.report [--against REV [--same-machine]] [--out report]

It reads what the pipeline wrote (metrics, curves, confusion data, machines), the sweep's
record, and DVC's own comparison (`dvc metrics diff`, `dvc params diff`); it never imports
TensorFlow. With --same-machine it first reproduces REV in a git worktree that shares the DVC
cache, and the workspace too, wherever a style was trained on another machine: the diff then
compares two runs of one machine.
"""

import argparse
import ast
import csv
import io
import json
import statistics
import tokenize
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: files only, no display or GUI backend
from matplotlib.ticker import MaxNLocator

from trainstyles import StageError, noise
from trainstyles.commands import dvc
from trainstyles.data import CLASS_NAMES
from trainstyles.machine import comparison, describe, differences, fingerprint, run_machines
from trainstyles.noise import RECORD, shared_params
from trainstyles.outputs import at_chance, read_history
from trainstyles.pages import README, replace_block, table
from trainstyles.params import STYLES, load_params
from trainstyles.same_machine import base_worktree, metric_values, reproduce_here, values_diff
from trainstyles.stage import METRICS_DIR, PLOTS_DIR, TIMING_DIR, run_stage

STYLE_MODULES = Path(__file__).parent / "styles"
# Equal styles draw equal curves (train_fit and train_step do): a thick first line under the
# others, each dashed its own way.
DASHES = ("--", "-.", ":", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1)))


def line(style: str) -> dict:
    index = STYLES.index(style)
    if index == 0:
        return {"linewidth": 4, "alpha": 0.5}
    return {"linestyle": DASHES[(index - 1) % len(DASHES)]}


def style_source(style: str) -> Path:
    return STYLE_MODULES / f"{style.removeprefix('train_')}.py"


def style_summary(style: str) -> str:
    """What the style is, as its module's docstring says in its first line."""
    docstring = ast.get_docstring(ast.parse(style_source(style).read_text())) or ""
    return docstring.split("\n")[0].removeprefix(f"{style}: ")


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


def p_value(p: float | None) -> str:
    return "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def styles_table(
    results: Mapping[str, dict], timing: Mapping[str, dict] | None, classes: int
) -> str:
    """The styles side by side; without `timing`, only what the same inputs always give."""
    header = ["style", "test accuracy", "test loss", "epochs", "best epoch"]
    header += ["seconds", "samples/s"] if timing else []
    rows = [
        [
            f"`{style}`" + (" ⚠ did not learn" if at_chance(results[style], classes) else ""),
            number(results[style]["test_accuracy"]),
            number(results[style]["test_loss"]),
            number(results[style]["epochs_run"]),
            number(results[style]["best_epoch"]),
        ]
        + (
            [number(timing[style]["train_seconds"], 1), number(timing[style]["samples_per_second"])]
            if timing
            else []
        )
        for style in STYLES
    ]
    return table(header, rows)


def spread(band: dict, digits: int = 4) -> tuple[str, str]:
    """'mean ± sd' and 'min–max' of one metric over the sweep."""
    return (
        f"{number(band['mean'], digits)} ± {number(band['sd'], digits)}",
        f"{number(band['min'], digits)}–{number(band['max'], digits)}",
    )


def sweep_section(record: dict | None, params: dict) -> str:
    """The sweep's tables, under a heading, with a note where the params have moved since."""
    if record is None:
        return f"## Noise\n\nNo sweep record ({RECORD}): run `make sweep` to measure it."
    lines = [f"## Noise: every style over {len(record['runs'])} seeds", sweep_tables(record)]
    changed = differences(record["params"], shared_params(params))
    if changed:
        lines.append(
            f"The record was made under other params ({', '.join(changed)}): "
            "its spread may not hold for these."
        )
    return "\n\n".join(lines)


def sweep_tables(record: dict) -> str:
    """Each style's spread over the sweep, and each pair of styles compared run by run."""
    runs, seeds = len(record["runs"]), record["seeds"]
    header = [
        "style", "test accuracy", "range", "test loss", "range", "best val accuracy", "epochs",
        "acceptance floor",
    ]  # fmt: skip
    rows = [
        [
            f"`{style}`",
            *spread(band["test_accuracy"]),
            *spread(band["test_loss"]),
            spread(band["best_val_accuracy"])[0],
            spread(band["epochs_run"], 1)[0],
            number(noise.floor(band["test_accuracy"])),
        ]
        for style, band in ((style, record["summary"][style]) for style in STYLES)
    ]
    pair_rows = [
        [
            f"`{pair['pair'][0]}` − `{pair['pair'][1]}`",
            f"`{metric}`",
            f"{number(statistics.fmean(pair['differences']), sign='+')} ± "
            f"{number(statistics.stdev(pair['differences']))}",
            number(pair.get("t"), 2),
            p_value(pair.get("p_holm")),
            f"**{pair['verdict']}**" if pair["verdict"] == "beyond noise" else pair["verdict"],
        ]
        for metric in noise.COMPARED
        for pair in noise.paired(record, metric)
    ]
    return "\n\n".join(
        [
            f"{runs} runs, seeds {seeds[0]}–{seeds[-1]}, each with its own summation order "
            f"(`model.hidden_order` {record['hidden_orders'][0]}–{record['hidden_orders'][-1]}), "
            f"on {describe(record['machine'])}: {record['seconds'] / 60:.0f} min in all, "
            f"{record['seconds'] / runs / 60:.1f} min a run "
            f"(`{RECORD}`, written by `make sweep`). Mean ± sd and range over the runs; the "
            f"acceptance floor of `make test-real` is mean − {noise.FLOOR_SDS} sd.",
            table(header, rows),
            "**The styles compared seed by seed.** Every run trains all styles with one seed, so "
            "each pair is judged on its per-run differences: a paired t-test over the "
            f"{runs} runs, two-sided, Holm-corrected over the pairs, at {noise.ALPHA:.0%}.",
            table(
                ["pair", "metric", "difference, mean ± sd", "t", "p (Holm)", "verdict"], pair_rows
            ),
        ]
    )


def altitude_table() -> str:
    """The tutorial's "choosing your altitude": what each style writes itself, in how much code."""
    header = ["style", "how it trains", "lines of code in its module"]
    rows = [
        [f"`{style}`", style_summary(style), str(code_lines(style_source(style)))]
        for style in STYLES
    ]
    sources = {style: style_source(style).read_text() for style in STYLES}
    through_fit = [
        f"`{style}`"
        for style, source in sources.items()
        if "fit_with_zoo(" in source and "def fit_with_zoo(" not in source
    ]
    if not through_fit:
        return table(header, rows)
    return (
        table(header, rows) + f"\n\n{', '.join(through_fit)} also call `fit.py`'s "
        "`fit_with_zoo`, the same fit() and callback zoo: overriding train_step keeps all else."
    )


def dvc_diff(kind: str, revision: str) -> dict:
    """`dvc metrics diff` or `dvc params diff` against `revision`, as DVC computes it."""
    return json.loads(dvc(kind, "diff", revision, "--json") or "{}")


def diff_rows(diff: Mapping[str, Mapping[str, dict]], record: dict | None) -> list[list[str]]:
    """One row per changed value: file, key, before, after, the change, the noise threshold
    (k·sd from the sweep), and whether the change is beyond it."""
    rows = []
    for path, changes in sorted(diff.items()):
        style = Path(path).stem
        for key, change in sorted(changes.items()):
            band = record["summary"].get(style, {}).get(key) if record else None
            if path.startswith(f"{TIMING_DIR}/"):
                label, bound = "wall clock: not judged", None
            elif not isinstance(change.get("diff"), int | float):
                label, bound = "added or removed", None
            elif record is None:
                label, bound = "no sweep record", None
            else:
                label = noise.judge(change["diff"], band)
                bound = noise.threshold(band) if band else None
            rows.append(
                [
                    f"`{path}`",
                    f"`{key}`",
                    number(change.get("old")),
                    number(change.get("new")),
                    number(change.get("diff"), sign="+"),
                    number(bound),
                    f"**{label}**" if label == "beyond noise" else label,
                ]
            )
    return rows


def machines_line(
    revision: str, base: Mapping[str, dict | None], head: Mapping[str, dict | None]
) -> str:
    """Whether base and head trained on one kind of machine, and what follows if not."""
    if any(machine is None for machine in (*base.values(), *head.values())):
        return f"`{revision}` or the workspace records no training machine for some style."
    differing = sorted({key for style in STYLES for key in differences(base[style], head[style])})
    if not differing:
        kinds = {describe(machine) for machine in head.values()}
        return "Base and head trained on the same kind of machine: " + "; ".join(sorted(kinds))
    return (
        "**Base and head trained on different kinds of machine** (they differ in "
        f"{', '.join(differing)}): the same inputs round differently there, so trained "
        "metrics move even where nothing else changed. `make report REV=… SAME_MACHINE=1` "
        "reproduces the base here."
    )


def machines_summary(recorded: Mapping[str, dict | None], here: dict) -> str:
    """What the run trained on, and whether this machine is of that kind."""
    known = [machine for machine in recorded.values() if machine]
    kinds = "; ".join(sorted({describe(machine) for machine in known})) or "not recorded"
    return f"Trained on {kinds}. Here, {comparison(here, recorded, 'the run')}."


def diff_section(revision: str, record: dict | None, here: dict, same_machine: bool) -> str:
    """Params and metrics against `revision`: DVC's diffs, or with `same_machine` the metrics
    of `revision` reproduced here against the workspace reproduced here."""
    sections = [
        f"## Against `{revision}`" + (", both reproduced on this machine" if same_machine else "")
    ]
    params = diff_rows(dvc_diff("params", revision), None)
    if same_machine:
        with base_worktree(revision) as base:
            metrics = values_diff(metric_values(base), metric_values(Path()))
        sections.append(f"Base and head both trained on this machine: {describe(here)}")
    else:
        metrics = dvc_diff("metrics", revision)
        sections.append(machines_line(revision, run_machines(revision), run_machines()))
    header = ["file", "key", revision, "workspace", "change"]
    sections.append(
        "**Params changed**\n\n"
        + (table(header, [row[:5] for row in params]) if params else "none")
    )
    rows = diff_rows(metrics, record)
    beyond = [row for row in rows if row[-1] == "**beyond noise**"]
    judged = [row for row in rows if row[-1] in ("**beyond noise**", "within noise")]
    header += ["noise threshold", "verdict"]
    if record is None:
        verdict = "**Metrics changed** (unjudged: no sweep record, run `make sweep`)"
    elif beyond:
        verdict = f"**{len(beyond)} of {len(judged)} changed metrics are beyond noise.**"
    else:
        verdict = (
            "**No change beyond noise**: "
            + (f"{len(judged)} metrics moved, all within" if judged else "no metric moved beyond")
            + " the sweep's noise."
        )
    rule = (
        f" A change is beyond noise when it exceeds k·sd of its metric over the sweep's "
        f"{len(record['runs'])} runs, k = {noise.k_factor(len(record['runs'])):.2f} "
        "(a 99 % prediction bound for two runs)."
        if record
        else ""
    )
    sections.append(verdict + rule)
    if beyond or (record is None and rows):
        sections.append(table(header, beyond or rows))
    rest = [row for row in rows if row not in beyond] if record else []
    if rest:
        sections.append(
            f"<details><summary>{len(rest)} more rows: within noise, or not judged</summary>"
            f"\n\n{table(header, rest)}\n\n</details>"
        )
    return "\n\n".join(sections)


def plot_curves(histories: Mapping[str, dict], path: Path) -> None:
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    for style, history in histories.items():
        epochs = range(1, len(history["val_loss"]) + 1)
        axes[0].plot(epochs, history["val_accuracy"], label=style, **line(style))
        axes[1].plot(epochs, history["val_loss"], label=style, **line(style))
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
        lines = {"label": style, "drawstyle": "steps-post", **line(style)}
        rate.plot(epochs, history["learning_rate"], **lines)
    rate.set(title="learning rate each epoch trained with", xlabel="epoch", yscale="log")
    rate.legend()
    for style, history in histories.items():
        if "grad_norm" in history:  # the styles that clip
            epochs = range(1, len(history["grad_norm"]) + 1)
            norm.plot(epochs, history["grad_norm"], marker=".", label=f"{style}: grad_norm")
            norm.plot(epochs, history["clip_norm"], linestyle="--", label=f"{style}: clip_norm")
    norm.set(title="mean global gradient norm before clipping", xlabel="epoch")
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
    rows = -(-len(STYLES) // 2)
    figure = Figure(figsize=(11, 5 * rows), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False).flat
    for ax in axes[len(STYLES) :]:
        ax.set_axis_off()
    for ax, style in zip(axes, STYLES, strict=False):
        counts = confusion_matrix(PLOTS_DIR / "confusion" / f"{style}.csv")
        ax.imshow(counts, cmap="Blues")
        for (actual, predicted), count in np.ndenumerate(counts):
            ax.text(predicted, actual, count, ha="center", va="center", fontsize=7)
        ticks = range(len(CLASS_NAMES))
        ax.set_xticks(ticks, CLASS_NAMES, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, CLASS_NAMES, fontsize=7)
        ax.set(title=style, xlabel="predicted", ylabel="actual")
    figure.savefig(path, dpi=90)


def write_report(out: Path, revision: str | None, same_machine: bool = False) -> Path:
    """The Markdown page and its PNGs in `out`; returns the page's path. With `same_machine`,
    the workspace's stale stages, and its styles trained elsewhere, are first re-run here."""
    if same_machine:
        dvc_diff("params", revision)  # an unknown revision fails before anything runs
        reproduce_here(Path())
    results = {style: read_json(METRICS_DIR / f"{style}.json") for style in STYLES}
    timing = {style: read_json(TIMING_DIR / f"{style}.json") for style in STYLES}
    agreement_figures = read_json(METRICS_DIR / "comparison.json")
    params = load_params()
    here = fingerprint(params.train.intra_op_threads)
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else None
    histories = {style: read_history(PLOTS_DIR / f"{style}.csv") for style in STYLES}
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(histories, out / "curves.png")
    plot_training(histories, out / "training.png")
    plot_confusion(out / "confusion.png")
    agreement = table(
        ["pair", "same prediction", "identical weights"],
        [
            [f"`{pair}`", number(share), number(agreement_figures["identical_weights"][pair])]
            for pair, share in agreement_figures["agreement"].items()
        ],
    )
    parts = [
        "# trainstyles: one model, several ways of training",
        styles_table(results, timing, params.model.num_classes),
        machines_summary(run_machines(), here),
        *(
            f"`{style}`: the pre-clip gradient norm went from {figures['grad_norm_first']:.2f} "
            f"in epoch 1 to {figures['grad_norm_last']:.2f} in epoch {figures['epochs_run']}."
            for style, figures in results.items()
            if "grad_norm_first" in figures
        ),
        "![Validation accuracy and loss per epoch](curves.png)",
        "![Learning rate per epoch; gradient norm against the clip](training.png)",
        "## How the styles agree on the test set\n\n" + agreement,
        "![Test confusion matrices](confusion.png)",
        sweep_section(record, params.model_dump()),
        "## Choosing your altitude\n\n" + altitude_table(),
    ]
    if revision:
        parts.append(diff_section(revision, record, here, same_machine))
    page = out / "report.md"
    page.write_text("\n\n".join(parts) + "\n")
    trained_on = "; ".join(sorted({describe(m) for m in run_machines().values() if m}))
    replace_block(
        README,
        "committed run",
        styles_table(results, None, params.model.num_classes) + f"\n\nTrained on {trained_on}.",
    )
    return page


def main() -> str:
    parser = argparse.ArgumentParser(prog="python -m trainstyles.report", description=__doc__)
    parser.add_argument("--against", metavar="REV", help="git revision to diff metrics against")
    parser.add_argument(
        "--same-machine",
        action="store_true",
        help="reproduce REV (and the workspace) on this machine before the diff",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    args = parser.parse_args()
    if args.same_machine and not args.against:
        raise StageError("--same-machine needs --against REV: the revision to reproduce here")
    page = write_report(args.out, args.against, args.same_machine)
    against = f", diffed against {args.against}" if args.against else ""
    against += " (both reproduced on this machine)" if args.same_machine else ""
    return f"wrote {page} and its PNGs{against}"


if __name__ == "__main__":
    run_stage(main)
