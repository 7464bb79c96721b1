"""The comparison report: the styles side by side, dvc.yaml's plots as PNGs, how much each style
hands to Keras, the seed sweep's noise and the styles compared within it, and what changed
against a git revision, each change labelled beyond or within noise. The page is also the pull
request's comment body (CML uploads the PNGs it links).

    python -m trainstyles.tools.report [--against REV [--same-machine]] [--out report]

It reads what the pipeline wrote (metrics, machines), the sweep's record, and DVC's own views:
`dvc plots show` (each plot of dvc.yaml as its Vega-Lite spec, filled with the data, which
vl-convert draws as DVC's page would), `dvc metrics diff`, `dvc params diff`. It never imports
TensorFlow. With --same-machine it first reproduces REV in a git worktree that shares the DVC
cache, and the workspace too, wherever a style was trained on another machine: the diff then
compares two runs of one machine.
"""

import argparse
import ast
import io
import json
import re
import tokenize
from collections.abc import Mapping
from pathlib import Path

import vl_convert

from trainstyles import StageError
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.outputs import at_chance
from trainstyles.pipeline.params import STYLES, load_params
from trainstyles.pipeline.stage import METRICS_DIR, PLOTS_DIR, TIMING_DIR, run_stage
from trainstyles.pipeline.styles import style_source, trains_through_fit
from trainstyles.tools import noise
from trainstyles.tools.commands import dvc
from trainstyles.tools.machines import comparison, describe, differences, kind_name, run_machines
from trainstyles.tools.noise import RECORDS_DIR, Reference, reference_for
from trainstyles.tools.noise_page import sweep_tables
from trainstyles.tools.pages import README, cell, replace_block, table
from trainstyles.tools.same_machine import base_worktree, metric_values, reproduce_here, values_diff

CONFUSION_DIR = PLOTS_DIR / "confusion"  # evaluate's test-set predictions, a file per style


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


def styles_table(
    results: Mapping[str, dict], timing: Mapping[str, dict] | None, classes: int
) -> str:
    """The styles side by side; without `timing`, only what the same inputs always give."""
    header = ["style", "test accuracy", "test loss", "epochs", "best epoch"]
    header += ["seconds", "samples/s"] if timing else []
    rows = [
        [
            f"`{style}`" + (" ⚠ did not learn" if at_chance(results[style], classes) else ""),
            cell(results[style]["test_accuracy"]),
            cell(results[style]["test_loss"]),
            cell(results[style]["epochs_run"]),
            cell(results[style]["best_epoch"]),
        ]
        + (
            [cell(timing[style]["train_seconds"], 1), cell(timing[style]["samples_per_second"])]
            if timing
            else []
        )
        for style in STYLES
    ]
    return table(header, rows)


def sweep_section(reference: Reference, params: dict) -> str:
    """The sweep's tables, under a heading that says which record judges the run and why, with
    a note where the params have moved since."""
    record = reference.record
    if record is None:
        return f"## Noise\n\nNo sweep record ({RECORDS_DIR}/): run `make sweep` to measure it."
    lines = [
        f"## Noise: every style over {len(record['runs'])} seeds on {kind_name(record['machine'])}",
        reference.reason,
        sweep_tables(record, reference.path),
    ]
    changed = noise.params_apart(record, params)
    if changed:
        lines.append(
            f"The record was made under other params ({', '.join(changed)}): "
            "its spread may not hold for these."
        )
    return "\n\n".join(lines)


def altitude_table() -> str:
    """The tutorial's "choosing your altitude": what each style writes itself, in how much code."""
    header = ["style", "how it trains", "lines of code in its module"]
    rows = [
        [f"`{style}`", style_summary(style), str(code_lines(style_source(style)))]
        for style in STYLES
    ]
    through_fit = [f"`{style}`" for style in STYLES if trains_through_fit(style)]
    if not through_fit:
        return table(header, rows)
    return (
        table(header, rows) + f"\n\n{', '.join(through_fit)} train through `fit.py`'s "
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
                    cell(change.get("old")),
                    cell(change.get("new")),
                    cell(change.get("diff"), sign="+"),
                    cell(bound),
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


def diff_section(revision: str, reference: Reference, here: dict, same_machine: bool) -> str:
    """Params and metrics against `revision`: DVC's diffs, or with `same_machine` the metrics
    of `revision` reproduced here against the workspace reproduced here."""
    record = reference.record
    sections = [
        f"## Against `{revision}`" + (", both reproduced on this machine" if same_machine else "")
    ]
    params = diff_rows(dvc_diff("params", revision), None)
    if same_machine:
        with base_worktree(revision) as (base, ran):
            metrics = values_diff(metric_values(base), metric_values(Path()))
        sections.append(f"Base and head both trained on this machine: {describe(here)}")
        sections.append(
            f"The base's stages run here: {', '.join(ran)}"
            if ran
            else "The base's stages run here: none (its run came from the DVC cache or remote)"
        )
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
        f"(a 99 % prediction bound for two runs). {reference.reason}"
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


def dvc_plots() -> dict[str, dict]:
    """Each plot that dvc.yaml defines, by its id, as the Vega-Lite spec DVC fills with the
    workspace's data: the one definition of every figure, shown alike by `dvc plots show`."""
    shown = json.loads(dvc("plots", "show", "--json"))
    failed: dict[str, list[str]] = {}
    for error in shown.get("errors", []):
        problem = " ".join(str(error.get("msg") or error.get("type")).split())
        failed.setdefault(problem, []).append(error.get("name") or error.get("rev", "?"))
    specs = {}
    for plot_id, renders in shown.get("data", {}).items():
        spec = next((render["content"] for render in renders if render["type"] == "vega"), None)
        if spec is None or not spec.get("data", {}).get("values"):
            failed.setdefault("no data", []).append(plot_id)
        specs[plot_id] = spec
    if failed:
        raise StageError(
            "dvc plots show: "
            + "; ".join(f"{', '.join(names)}: {problem}" for problem, names in failed.items())
        )
    if not specs:
        raise StageError("dvc plots show: dvc.yaml defines no plots")
    return specs


def png_name(plot_id: str) -> str:
    """A file name for a plot id: `val_accuracy` → val_accuracy.png, a plot named by its data
    file, `plots/confusion/train_fit.csv` → confusion-train_fit.png."""
    path = Path(plot_id).with_suffix("")
    parts = path.relative_to(PLOTS_DIR).parts if path.is_relative_to(PLOTS_DIR) else path.parts
    return re.sub(r"[^\w.-]+", "-", "-".join(parts)) + ".png"


def plot_title(spec: dict, plot_id: str) -> str:
    """The title dvc.yaml gives the plot (DVC writes it as Vega-Lite's {"text": …}), else its id."""
    title = spec.get("title")
    return (title.get("text") if isinstance(title, dict) else title) or plot_id


def render_plots(specs: Mapping[str, dict], out: Path) -> dict[str, str]:
    """Each spec as a PNG in `out`, by vl-convert's bundled Vega and fonts (no browser); returns
    each plot's Markdown image link."""
    links = {}
    for plot_id, spec in specs.items():
        try:
            # DVC inlines the data: no URL may be fetched (vl-convert would fetch any by default).
            png = vl_convert.vegalite_to_png(spec, scale=2, allowed_base_urls=[])
        except ValueError as error:  # how vl-convert says Vega could not draw the spec
            problem = " ".join(str(error).splitlines()[:2])  # what failed, not the JS stack
            raise StageError(f"cannot draw plot {plot_id}: {problem}") from None
        (out / png_name(plot_id)).write_bytes(png)
        alt = re.sub(r"([\[\]])", r"\\\1", plot_title(spec, plot_id))  # a ] would end the link
        links[plot_id] = f"![{alt}]({png_name(plot_id)})"
    return links


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
    # The run is judged on its own machine's kind, which is not always this one's.
    reference = reference_for(noise.run_machine() or here)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(dvc_plots(), out)
    # The confusion matrices, plotted from evaluate's per-file data, go with the agreement.
    confusion = {plot_id for plot_id in plots if Path(plot_id).is_relative_to(CONFUSION_DIR)}
    agreement = table(
        ["pair", "same prediction", "identical weights"],
        [
            [f"`{pair}`", cell(share), cell(agreement_figures["identical_weights"][pair])]
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
        *(link for plot_id, link in plots.items() if plot_id not in confusion),
        "## How the styles agree on the test set\n\n" + agreement,
        *(link for plot_id, link in plots.items() if plot_id in confusion),
        sweep_section(reference, params.model_dump()),
        "## Choosing your altitude\n\n" + altitude_table(),
    ]
    if revision:
        parts.append(diff_section(revision, reference, here, same_machine))
    page = out / "report.md"
    page.write_text("\n\n".join(parts) + "\n")
    return page


def committed_run_block() -> str:
    """README's table of the run in the workspace, and the machines it trained on: what the
    README shows as the committed run, rewritten only when asked (`make readme`)."""
    results = {style: read_json(METRICS_DIR / f"{style}.json") for style in STYLES}
    trained_on = "; ".join(sorted({describe(m) for m in run_machines().values() if m}))
    table_text = styles_table(results, None, load_params().model.num_classes)
    return f"{table_text}\n\nTrained on {trained_on}."


def main() -> str:
    parser = argparse.ArgumentParser(prog="python -m trainstyles.tools.report", description=__doc__)
    parser.add_argument("--against", metavar="REV", help="git revision to diff metrics against")
    parser.add_argument(
        "--same-machine",
        action="store_true",
        help="reproduce REV (and the workspace) on this machine before the diff",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    parser.add_argument(
        "--readme",
        action="store_true",
        help=f"only rewrite {README}'s committed-run table from the workspace's run",
    )
    args = parser.parse_args()
    if args.readme:
        if not replace_block(README, "committed run", committed_run_block()):
            raise StageError(f"{README} has no <!-- committed run --> block to rewrite")
        return f"rewrote {README}'s committed-run table from the workspace's run"
    if args.same_machine and not args.against:
        raise StageError("--same-machine needs --against REV: the revision to reproduce here")
    page = write_report(args.out, args.against, args.same_machine)
    against = f", diffed against {args.against}" if args.against else ""
    against += " (both reproduced on this machine)" if args.same_machine else ""
    return f"wrote {page} and its PNGs{against}"


if __name__ == "__main__":
    run_stage(main)
