"""Signal or noise: what the seed sweep's record says about a metric, a change, a pair of styles.

A record (`sweep/<kind>.json`, written by `make sweep`) holds every metric of every style over
N runs on one kind of machine, each run with its own seed and its own summation order
(`model.hidden_order`). Rounding differs from kind to kind, so a run is judged by the record of
its own kind where there is one, else by the nearest, and what judges it is said. From a record:

- a change between two single runs is *beyond noise* when it exceeds k·sd of that metric, with
  k = √2 · t(0.995, n − 1): the two-sided 99 % prediction bound for the difference of two new
  runs when sd comes from n runs (√2: both runs carry noise; t, not z: sd is itself estimated
  from few runs). k is 6.5 for 5 runs, 4.6 for 10;
- two styles are compared seed by seed, since each run trains every style with the same seed:
  a paired t-test on the per-run differences, with Holm's correction over all pairs, at 5 %;
- the acceptance floor of a style's test accuracy is its mean − 4 sd.
"""

import json
import math
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from scipy import stats

from trainstyles.pipeline.params import STYLES
from trainstyles.tools.machines import (
    differences,
    kind_differences,
    kind_name,
    kind_slug,
    run_machines,
)

RECORDS_DIR = Path("sweep")  # a record per machine kind, side by side
VARIED = ("seed", "hidden_order")  # what differs from run to run, kept out of the record's params
LEVEL = 0.99  # of the prediction bound behind "beyond noise"
ALPHA = 0.05  # of the paired comparisons between styles, after Holm's correction
FLOOR_SDS = 4  # the acceptance floor: mean − 4 sd
# Metrics that describe a run's length rather than its quality: the report shows them but a
# pair of styles is compared on what it learned.
COMPARED = ("test_accuracy", "test_loss")


@dataclass(frozen=True)
class Reference:
    """The sweep record a run is judged against (its reference noise), where that record is, and
    one sentence, `reason`, saying which record and why."""

    record: dict | None
    path: Path | None
    reason: str


def record_path(machine: dict, directory: Path = RECORDS_DIR) -> Path:
    """Where the record of `machine`'s kind lives: sweep/amd-epyc-25-17.json."""
    return directory / f"{kind_slug(machine)}.json"


def records(directory: Path = RECORDS_DIR) -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def run_machine(root: Path = Path()) -> dict | None:
    """The machine that trained the run in `root`, as its first recorded style says."""
    return next((machine for machine in run_machines(root=root).values() if machine), None)


def reference_for(machine: dict, directory: Path = RECORDS_DIR) -> Reference:
    """The record of `machine`'s kind; where there is none, the nearest (the fewest fingerprint
    keys apart, then the most runs), which stands in and says so."""
    found = records(directory)
    if not found:
        return Reference(
            None, None, f"The run is not judged: {directory}/ holds no sweep record, and "
            "`make sweep` records one."
        )  # fmt: skip
    kind = kind_name(machine)

    def distance(path: Path) -> tuple:
        recorded = found[path]["machine"]
        apart = kind_differences(recorded, machine)
        return kind_name(recorded) != kind, len(apart), -len(found[path]["runs"])

    path = min(found, key=distance)
    record = found[path]
    runs = f"{len(record['runs'])} seeded runs"
    if kind_name(record["machine"]) == kind:
        return Reference(record, path, f"The run is judged by the noise of {runs} on its own kind "
                                   f"of machine, {kind} ({path}).")  # fmt: skip
    apart = " and ".join(in_plain_words(kind_differences(record["machine"], machine)))
    return Reference(
        record,
        path,
        f"The run is judged by the noise of {runs} on {kind_name(record['machine'])} ({path}), "
        f"standing in for {kind}, which has no sweep record: the two differ in {apart}, and "
        f"`make sweep` on {kind} records its own.",
    )


# A fingerprint's keys (machine.fingerprint) as a reader names them, by the key's start.
PLAIN_WORDS = {
    "cpu.model_name": "CPU name", "cpu.vendor": "CPU vendor",
    "cpu.family_model": "CPU family and model", "cpu.features": "instruction sets",
    "cpu.caches": "cache sizes", "threads": "thread settings", "gpu": "GPUs",
    "versions.tensorflow": "TensorFlow version", "versions.keras": "Keras version",
    "versions.numpy": "NumPy version",
}  # fmt: skip


def in_plain_words(keys: list[str]) -> list[str]:
    """Dotted fingerprint keys as a reader names them, each named once, in their order."""
    named = [next((w for k, w in PLAIN_WORDS.items() if key.startswith(k)), key) for key in keys]
    return list(dict.fromkeys(named))


def shared_params(params: dict) -> dict:
    """The params every run of a sweep shares: all but what the sweep varies."""
    model = {key: value for key, value in params["model"].items() if key not in VARIED}
    return {**{key: v for key, v in params.items() if key not in VARIED}, "model": model}


def params_apart(record: dict, params: dict) -> list[str]:
    """The params a record's runs shared that differ from `params` now, as dotted keys. A style
    added since the sweep brings a section the record never had: that changes nothing it
    measured."""
    now = {
        key: value
        for key, value in shared_params(params).items()
        if key not in STYLES or key in record["params"]
    }
    return differences(record["params"], now)


def summary(values: list[float]) -> dict:
    """n, mean, sample standard deviation, min and max of one metric over the runs."""
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values),
        "min": min(values),
        "max": max(values),
    }


def summarise_runs(runs: list[dict]) -> dict:
    """Per style and metric, the summary over the runs; a metric every run reports."""
    return {
        style: {
            metric: summary([run["metrics"][style][metric] for run in runs])
            for metric in runs[0]["metrics"][style]
        }
        for style in runs[0]["metrics"]
    }


def k_factor(n: int) -> float:
    """k of the k·sd threshold for `n` runs (see the module's docstring)."""
    return math.sqrt(2) * stats.t.ppf(0.5 + LEVEL / 2, n - 1)


def threshold(band: dict) -> float:
    return k_factor(band["n"]) * band["sd"]


def judge(change: float, band: dict | None) -> str:
    """'beyond noise' or 'within noise' for a change of one metric between two runs."""
    if band is None:
        return "not in the sweep"
    return "beyond noise" if abs(change) > threshold(band) else "within noise"


def floor(band: dict) -> float:
    return band["mean"] - FLOOR_SDS * band["sd"]


def swept_styles(record: dict) -> list[str]:
    """The styles the record measured, in the styles' order: one added since is not among them."""
    return [style for style in STYLES if style in record["summary"]]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value as if tested alone, the family kept at ALPHA."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def paired(record: dict, metric: str) -> list[dict]:
    """Every pair of styles on `metric`, run by run: the differences, the paired t-test, and
    the verdict. Pairs that are equal in every run (the same math) need no test."""
    runs = record["runs"]
    pairs = []
    for a, b in combinations(swept_styles(record), 2):
        differences = [run["metrics"][a][metric] - run["metrics"][b][metric] for run in runs]
        pair = {"pair": (a, b), "differences": differences}
        if any(differences):
            test = stats.ttest_rel(
                [run["metrics"][a][metric] for run in runs],
                [run["metrics"][b][metric] for run in runs],
            )
            pair |= {"t": float(test.statistic), "p": float(test.pvalue)}
        pairs.append(pair)
    tested = [pair for pair in pairs if "p" in pair]
    for pair, adjusted in zip(tested, holm([pair["p"] for pair in tested]), strict=True):
        pair["p_holm"] = adjusted
    for pair in pairs:
        pair["verdict"] = (
            "identical in every run"
            if "p" not in pair
            else "beyond noise"
            if pair["p_holm"] < ALPHA
            else "within noise"
        )
    return pairs
