"""docs/noise.md's tables, which the report repeats for the record that judges its run: each
style's mean, sd and range over a seed sweep, and each pair of styles compared seed by seed.
Light on purpose (no plotting): `make sweep` writes the page without the report's imports.
"""

import statistics
from collections.abc import Mapping
from pathlib import Path

from trainstyles.pipeline.params import STYLES
from trainstyles.tools import noise
from trainstyles.tools.machines import describe, kind_name
from trainstyles.tools.pages import cell, table


def p_value(p: float | None) -> str:
    return "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def mean_sd_and_range(band: dict, digits: int = 4) -> tuple[str, str]:
    """'mean ± sd' and 'min–max' of one metric over the sweep."""
    return (
        f"{cell(band['mean'], digits)} ± {cell(band['sd'], digits)}",
        f"{cell(band['min'], digits)}–{cell(band['max'], digits)}",
    )


# Where docs/noise.md explains the paired test, once for all the records its tables show.
PAIRED_TEST = "#the-statistics"


def records_tables(found: Mapping[Path, dict]) -> str:
    """docs/noise.md's tables: each machine kind's record under a heading of its own."""
    return "\n\n".join(
        f"#### {kind_name(record['machine'])}\n\n{sweep_tables(record, path, PAIRED_TEST)}"
        for path, record in found.items()
    )


def sweep_tables(record: dict, path: Path, paired_test: str | None = None) -> str:
    """Each style's mean, sd and range over the sweep, and each pair of styles compared run by
    run. The paired test is said in full, or, on a page that explains it, linked (`paired_test`)."""
    runs, seeds = len(record["runs"]), record["seeds"]
    header = [
        "style", "test accuracy", "range", "test loss", "range", "best val accuracy", "epochs",
        "acceptance floor",
    ]  # fmt: skip
    rows = [
        [
            f"`{style}`",
            *mean_sd_and_range(band["test_accuracy"]),
            *mean_sd_and_range(band["test_loss"]),
            mean_sd_and_range(band["best_val_accuracy"])[0],
            mean_sd_and_range(band["epochs_run"], 1)[0],
            cell(noise.floor(band["test_accuracy"])),
        ]
        for style, band in (
            (style, record["summary"][style]) for style in noise.swept_styles(record)
        )
    ] + [
        [f"`{style}`", "not in the sweep", *[""] * (len(header) - 2)]
        for style in STYLES
        if style not in record["summary"]
    ]
    pair_rows = [
        [
            f"`{pair['pair'][0]}` − `{pair['pair'][1]}`",
            f"`{metric}`",
            f"{cell(statistics.fmean(pair['differences']), sign='+')} ± "
            f"{cell(statistics.stdev(pair['differences']))}",
            cell(pair.get("t"), 2),
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
            f"(`{path}`, written by `make sweep`). Mean ± sd and range over the runs; the "
            f"acceptance floor of `make test-real` is mean − {noise.FLOOR_SDS} sd.",
            table(header, rows),
            f"**The styles compared seed by seed**, over the {runs} runs "
            f"([the paired test]({paired_test})):"
            if paired_test
            else "**The styles compared seed by seed.** Every run trains all styles with one "
            "seed, so each pair is judged on its per-run differences: a paired t-test over the "
            f"{runs} runs, two-sided, Holm-corrected over the pairs, at {noise.ALPHA:.0%}.",
            table(
                ["pair", "metric", "difference, mean ± sd", "t", "p (Holm)", "verdict"], pair_rows
            ),
        ]
    )
