"""The seed sweep: every style trained N more times, through DVC's experiment queue, and the
spread of each metric written to a record in git.

    python -m trainstyles.tools.sweep [--seeds 5] [--replace]     (make sweep SEEDS=5)

Run i (1 to N) trains with `seed` + i and `model.hidden_order` + i: a new seed and a new
summation order, so the spread holds both seed luck and rounding, the stand-in for another
machine. None repeats the workspace's own params: a run DVC found up to date would bring the
committed run's figures, from whatever machine made them, instead of training here. The runs
are queued experiments named sweep-<seed>, run one at a time in temporary copies: the
workspace and its committed run stay as they are, and `dvc exp show` lists the runs afterwards.
Earlier runs of the same names are replaced. The record is this machine kind's,
sweep/<kind>.json, beside the other kinds' (noise.reference_for chooses among them).
Spread over several hosts, the same runs are trained and merged by tools/sweep_shards.py.
"""

import argparse
import json
import time
from pathlib import Path

from trainstyles import StageError
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.outputs import write_json
from trainstyles.pipeline.params import STYLES, Params, load_params
from trainstyles.pipeline.stage import MACHINE_DIR, METRICS_DIR, TIMING_DIR, run_stage
from trainstyles.tools.commands import dvc, git
from trainstyles.tools.machines import read_at
from trainstyles.tools.noise import record_path, records, shared_params, summarise_runs
from trainstyles.tools.noise_page import records_tables
from trainstyles.tools.pages import NOISE_PAGE, replace_block

DEFAULT_RUNS = 5

PREFIX = "sweep-"


def planned_runs(seed: int, hidden_order: int, count: int) -> list[dict]:
    """Runs 1 to `count` after the workspace's own seed and order: each trains anew here."""
    return [
        {"name": f"{PREFIX}{seed + i}", "seed": seed + i, "hidden_order": hidden_order + i}
        for i in range(1, count + 1)
    ]


def queue(runs: list[dict]) -> None:
    """Drop experiments of the same names, then queue one experiment per run."""
    existing = set(dvc("exp", "list", "--name-only").split())
    stale = [run["name"] for run in runs if run["name"] in existing]
    if stale:
        dvc("exp", "remove", *stale)
    for run in runs:
        dvc(
            "exp", "run", "--queue", "--name", run["name"],
            "--set-param", f"seed={run['seed']}",
            "--set-param", f"model.hidden_order={run['hidden_order']}",
        )  # fmt: skip


def experiment_results(runs: list[dict], baseline: str) -> list[dict]:
    """Each run's result (run_result), from its experiment as `dvc exp show` has it. The
    experiments are those of `baseline`, the commit they were queued on, wherever HEAD has moved
    since (`dvc exp show` alone lists only HEAD's)."""
    shown = json.loads(dvc("exp", "show", "--json", "--rev", baseline))
    by_name = {
        experiment["name"]: experiment
        for commit in shown
        for experiment in commit.get("experiments") or []
    }
    results = []
    for run in runs:
        experiment = by_name.get(run["name"])
        if experiment is None:
            raise StageError(f"no experiment {run['name']} of commit {baseline[:7]}")
        # An experiment pulled from another host has no executor here: only its commit.
        executor = experiment["executor"] or {"state": "success"}
        if executor["state"] != "success":
            raise StageError(
                f"experiment {run['name']} did not succeed: see {executor['local']['log']}"
            )
        results.append(run_result(run, experiment["revs"][0]))
    return results


def run_result(run: dict, revision: dict) -> dict:
    """The run with its experiment's metrics per style, checked against the params it was queued
    with; and those params, the machine each style trained on and the styles' training time."""
    data = revision["data"]
    params = data["params"]["params.yaml"]["data"]
    if (params["seed"], params["model"]["hidden_order"]) != (run["seed"], run["hidden_order"]):
        raise StageError(f"experiment {run['name']} ran with other params than queued")
    metrics, rev = data["metrics"], revision["rev"]
    timing = [read_at(rev, TIMING_DIR / f"{style}.json") or {} for style in STYLES]
    return {
        **run,
        "metrics": {style: metrics[f"{METRICS_DIR}/{style}.json"]["data"] for style in STYLES},
        "params": params,
        "machines": {style: read_at(rev, MACHINE_DIR / f"{style}.json") for style in STYLES},
        "train_seconds": sum(figures.get("train_seconds", 0) for figures in timing),
    }


def expected_machine(params: Params) -> dict:
    """The kind the sweep will record, known before it trains: the GPU where one will train."""
    machine = fingerprint(params.train.intra_op_threads)
    on_gpu = bool(machine["gpu"]) and params.train.device != "cpu"
    return machine | {"devices": ["GPU:0" if on_gpu else "CPU:0"]}


def runs_wanted(
    requested: int | None, out: Path, replace: bool = False, asked: str | None = None
) -> int:
    """How many runs to sweep: as asked, else as many as the record at `out` holds (at least
    DEFAULT_RUNS). Fewer than it holds would replace it with a wider threshold and lower floors,
    so that is refused, before anything is queued or written, unless `replace` says so; the
    error names what `asked` for them (by default --seeds)."""
    held = len(json.loads(out.read_text())["runs"]) if out.is_file() else 0
    if requested is None:
        return max(held, DEFAULT_RUNS)
    if requested < held and not replace:
        raise StageError(
            f"{asked or f'--seeds {requested}'}: {out} holds {held} runs, and a record of fewer "
            f"would replace it (its threshold wider, its floors lower); ask for {held} or more, "
            "or --replace"
        )
    return requested


def check_count(count: int) -> None:
    if count < 2:
        raise StageError(f"--seeds {count}: a spread needs at least 2 runs")


def train(runs: list[dict]) -> tuple[list[dict], float]:
    """The runs trained here as queued experiments, one at a time, and their results; with the
    wall-clock seconds they took."""
    baseline = git("rev-parse", "HEAD").strip()
    queue(runs)
    start = time.perf_counter()
    dvc("exp", "run", "--run-all", "--jobs", "1", capture=False)
    seconds = time.perf_counter() - start
    return experiment_results(runs, baseline), seconds


def sweep(count: int) -> dict:
    check_count(count)
    params = load_params()
    results, seconds = train(planned_runs(params.seed, params.model.hidden_order, count))
    return sweep_record(params, results, seconds)


RUN_KEYS = ("name", "seed", "hidden_order", "metrics")  # what a record keeps of each run


def sweep_record(params: Params, results: list[dict], seconds: float) -> dict:
    """The record of the runs' results, all of them trained on one machine."""
    machines = [run["machines"][style] for run in results for style in STYLES]
    if any(machine != machines[0] for machine in machines):
        raise StageError("the sweep's runs record different machines: run it on one machine")
    return {
        "seeds": [run["seed"] for run in results],
        "hidden_orders": [run["hidden_order"] for run in results],
        "summary": summarise_runs(results),
        "runs": [{key: run[key] for key in RUN_KEYS} for run in results],
        "machine": machines[0],
        "params": shared_params(params.model_dump()),
        "seconds": round(seconds, 1),
    }


def main() -> str:
    parser = argparse.ArgumentParser(prog="python -m trainstyles.tools.sweep", description=__doc__)
    parser.add_argument(
        "--seeds", type=int, help="how many runs (default: as many as the record has, at least 5)"
    )
    parser.add_argument("--out", type=Path, help="the record (this kind's, sweep/<kind>.json)")
    parser.add_argument(
        "--replace", action="store_true", help="replace the record even with fewer runs"
    )
    args = parser.parse_args()
    out = args.out or record_path(expected_machine(load_params()))
    count = runs_wanted(args.seeds, out, args.replace)
    record = sweep(count)
    trained_on = args.out or record_path(record["machine"])
    if trained_on != out:  # the trainers ran on another device than expected: its record
        runs_wanted(count, trained_on, args.replace)
    write_json(record, trained_on)
    page = args.out is None and replace_block(NOISE_PAGE, "sweep", records_tables(records()))
    return (
        f"trained {len(STYLES)} styles under seeds {record['seeds'][0]}–{record['seeds'][-1]} "
        f"in {record['seconds']:.0f} s; wrote {trained_on}"
        + (f" and {NOISE_PAGE}'s tables" if page else "")
    )


if __name__ == "__main__":
    run_stage(main)
