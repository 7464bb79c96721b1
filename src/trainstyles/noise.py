"""Signal or noise: what the seed sweep's record says about a metric, a change, a pair of styles.

The record (`sweep/record.json`, written by `make sweep`) holds every metric of every style over
N runs, each with its own seed and its own summation order (`model.hidden_order`, the stand-in
for another machine's rounding). From it:

- a change between two single runs is *beyond noise* when it exceeds k·sd of that metric, with
  k = √2 · t(0.995, n − 1): the two-sided 99 % prediction bound for the difference of two new
  runs when sd comes from n runs (√2: both runs carry noise; t, not z: sd is itself estimated
  from few runs). k is 6.5 for 5 runs, 4.6 for 10;
- two styles are compared seed by seed, since each run trains every style with the same seed:
  a paired t-test on the per-run differences, with Holm's correction over all pairs, at 5 %;
- the acceptance floor of a style's test accuracy is its mean − 4 sd.
"""

import math
import statistics
from itertools import combinations
from pathlib import Path

from scipy import stats

from trainstyles.params import STYLES

RECORD = Path("sweep/record.json")
VARIED = ("seed", "hidden_order")  # what differs from run to run, kept out of the record's params
LEVEL = 0.99  # of the prediction bound behind "beyond noise"
ALPHA = 0.05  # of the paired comparisons between styles, after Holm's correction
FLOOR_SDS = 4  # the acceptance floor: mean − 4 sd
# Metrics that describe a run's length rather than its quality: the report shows them but a
# pair of styles is compared on what it learned.
COMPARED = ("test_accuracy", "test_loss")


def shared_params(params: dict) -> dict:
    """The params every run of a sweep shares: all but what the sweep varies."""
    model = {key: value for key, value in params["model"].items() if key not in VARIED}
    return {**{key: v for key, v in params.items() if key not in VARIED}, "model": model}


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
    for a, b in combinations(STYLES, 2):
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
