"""The bench's tables and docs/bench.md's generated block, rendered from a results file: the
epochs against the peer and the limit, each style's profile, the pipeline's stages."""

from pathlib import Path

from trainstyles.tools.bench.figures import (
    NO_XLA,
    PEER,
    fixed_overhead,
    machine_kind,
    measured_on,
)
from trainstyles.tools.pages import BENCH_PAGE, replace_block, table

RESULTS = Path("bench/results.json")


Rows = list[tuple[str, ...]]

Table = tuple[str, Rows]  # a caption that names the kind of machine, and the rows


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


def missing_jax_note(reason: str) -> str:
    return f"no JAX peers: {reason}; their rows are left out"


def missing_notes(results: dict) -> list[str]:
    """A sentence for each peer that did not run, saying why."""
    notes = [(missing_peer_note, results.get("peer_missing"))]
    notes.append((missing_jax_note, results.get("jax_missing")))
    return [sentence(note(reason)) for note, reason in notes if reason]


def epoch_table(results: dict) -> str:
    """The printed table: one row per variant, then the limit; and why a peer is missing."""
    return "\n".join([printed(epoch_rows(results)), *missing_notes(results)])


def dispatches(figures: dict) -> str:
    """A variant's dispatches per epoch: one count, or its range where repeats differed."""
    counted = figures.get("dispatches_per_epoch")
    if not counted:  # results from before the bench counted them
        return ""
    if counted["min"] == counted["max"]:
        return f"{counted['median']:,.0f}"
    return f"{counted['median']:,.0f} ({counted['min']:,.0f}-{counted['max']:,.0f})"


def epoch_rows(results: dict) -> Table:
    header = ("", "s/epoch median (min-max)", "samples/s", f"x {PEER} (min-max)", "x limit")
    rows = [(*header, "dispatches/epoch")]
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
                dispatches(figures),
            )
        )
    rows.append(("limit", f"{limit:.2f}", "", "", "1.00", ""))
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
    if len(set(kinds)) > 1:  # a column per variant: a row names each one's kind
        return "Profiles, each column measured on the kind it names:", [
            rows[0],
            ("measured on", *kinds),
            *rows[1:],
        ]
    return with_kinds("Profiles", rows, kinds)


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
        for key, label in [
            ("tensorflow", "TensorFlow"),
            ("keras", "Keras"),
            ("jax", "JAX"),
            ("torch", "PyTorch"),
        ]
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
        "variant. Square GEMM rates during the run, in order: "
        f"{seen} GFLOP/s. Every epoch's seconds: `{source}`.",
        markdown(epoch_rows(results)),
        f"The limit: {limit['epoch_flops'] / 1e9:.1f} GFLOP per epoch at "
        f"{limit['gemm_gflops']:.0f} GFLOP/s, the best rate of the run (the model's own "
        f"shapes, batch by each layer, reached {shapes} GFLOP/s)"
        + (f", numpy on {limit['blas']}." if limit.get("blas") else "."),
    ]
    if any(name.endswith(NO_XLA) for name in results["epochs"]):
        parts.insert(
            2,
            f"The rows marked{NO_XLA} train with `train.jit_compile: false`: TensorFlow's op "
            "determinism instead of XLA, the default on a GPU "
            "([reproducibility.md](reproducibility.md#xla-trainjit_compile)).",
        )
    for note in reversed(missing_notes(results)):
        parts.insert(2, note)
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
