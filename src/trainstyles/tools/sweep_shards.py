"""The seed sweep spread over hosts: each host trains its shard of the runs as queued experiments
and shares them through the git remote and the DVC remote (`dvc exp push`); one merge pulls them
all (`dvc exp pull`) and writes a record per kind of machine the shards trained on.

    python -m trainstyles.tools.sweep_shards --shard I/N --seeds S   (make sweep SHARD=I/N SEEDS=S)
    python -m trainstyles.tools.sweep_shards --merge --seeds S [--replace]  (make sweep-merge)

The runs are those `make sweep --seeds S` would train (sweep.planned_runs); run k of them is
shard (k - 1) mod N + 1's. Every host decides alone, from the same commit, which runs are its
own. Rounding differs by kind of machine, and hosted runners come in several: the merge files
each run under the kind its trainers recorded (metrics/machine/), never under another, and a
kind that trained a single run gets no record (one run has no spread). A merged record's
`seconds` is its runs' training time summed: each host's wall clock stays on that host.
"""

import argparse
import re
from collections import defaultdict
from pathlib import Path

from trainstyles import StageError
from trainstyles.pipeline.outputs import write_json
from trainstyles.pipeline.params import STYLES, Params, load_params
from trainstyles.pipeline.stage import run_stage
from trainstyles.tools.commands import dvc, git
from trainstyles.tools.machines import differences, kind_name
from trainstyles.tools.noise import RECORDS_DIR, record_path, records, shared_params
from trainstyles.tools.noise_page import records_tables
from trainstyles.tools.pages import NOISE_PAGE, replace_block
from trainstyles.tools.sweep import (
    check_count,
    experiment_results,
    planned_runs,
    runs_wanted,
    sweep_record,
    train,
)

GIT_REMOTE = "origin"  # where the shards' experiments meet: the repository they were cloned from


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' as (2, 3): the second of three shards."""
    found = re.fullmatch(r"(\d+)/(\d+)", text)
    if not found or not 1 <= int(found[1]) <= int(found[2]):
        raise StageError(f"--shard {text}: give I/N, the I-th of N shards, 1 ≤ I ≤ N (e.g. 1/2)")
    return int(found[1]), int(found[2])


def shard_runs(runs: list[dict], index: int, count: int) -> list[dict]:
    """The runs of shard `index` of `count`: every count-th run, from the index-th."""
    if count > len(runs):
        raise StageError(
            f"--shard {index}/{count}: {len(runs)} runs leave some of {count} shards none; "
            f"spread them over at most {len(runs)}"
        )
    return runs[index - 1 :: count]


def cache_args() -> list[str]:
    """Without a DVC remote, experiments travel through git alone: their metrics, not models."""
    return [] if dvc("remote", "list").strip() else ["--no-cache"]


def run_shard(index: int, count: int, seeds: int) -> str:
    check_count(seeds)
    params = load_params()
    runs = shard_runs(planned_runs(params.seed, params.model.hidden_order, seeds), index, count)
    git("remote", "get-url", GIT_REMOTE)  # before training: the push would fail after it
    results, seconds = train(runs)
    names = [run["name"] for run in results]
    # --force: a shard run again replaces its experiments, as `make sweep` replaces its own.
    dvc("exp", "push", "--force", *cache_args(), GIT_REMOTE, *names)
    return (
        f"shard {index}/{count} trained {len(STYLES)} styles under seeds "
        f"{', '.join(str(run['seed']) for run in results)} in {seconds:.0f} s; pushed "
        f"{', '.join(names)} to {GIT_REMOTE}"
    )


def swept_params(run: dict) -> dict:
    """What a run's params share with every other run of its sweep, checked and with defaults."""
    return shared_params(Params.model_validate(run["params"]).model_dump())


def same_params(results: list[dict]) -> Params:
    """The params all the runs shared; refused if any two differ in more than the sweep varies."""
    first = results[0]
    for run in results[1:]:
        apart = differences(swept_params(first), swept_params(run))
        if apart:
            raise StageError(
                f"{run['name']} ran with other params than {first['name']} ({', '.join(apart)}): "
                "a record's runs differ only in seed and model.hidden_order; run every shard on "
                "one commit, params.yaml unedited"
            )
    return Params.model_validate(first["params"])


def kind_records(
    results: list[dict], replace: bool = False, directory: Path = RECORDS_DIR
) -> tuple[dict[Path, dict], list[str]]:
    """A record per kind of machine the runs trained on, each of that kind's runs only; and a
    note for each kind that trained one run, too few for a spread. All checked before anything
    is written: mixed params, and a record that would replace a larger one (unless `replace`)."""
    params = same_params(results)
    by_kind = defaultdict(list)
    for run in results:
        by_kind[record_path(run["machines"][STYLES[0]], directory)].append(run)
    found, notes = {}, []
    for path, runs in by_kind.items():
        kind = kind_name(runs[0]["machines"][STYLES[0]])
        if len(runs) < 2:
            notes.append(f"{kind} trained 1 run ({runs[0]['name']}), too few for a record")
            continue
        runs_wanted(len(runs), path, replace, asked=f"{len(runs)} runs on {kind}")
        seconds = sum(run["train_seconds"] for run in runs)
        found[path] = sweep_record(params, runs, seconds)
    if not found:
        raise StageError(f"no kind of machine trained 2 of the runs: nothing to record; {notes[0]}")
    return found, notes


def merge(seeds: int, replace: bool) -> str:
    check_count(seeds)
    params = load_params()
    runs = planned_runs(params.seed, params.model.hidden_order, seeds)
    baseline = git("rev-parse", "HEAD").strip()
    # --force: a shard run again since an earlier merge replaces the copy pulled then.
    dvc("exp", "pull", "--force", *cache_args(), GIT_REMOTE, *(run["name"] for run in runs))
    found, notes = kind_records(experiment_results(runs, baseline), replace)
    for path, record in found.items():
        write_json(record, path)
    page = replace_block(NOISE_PAGE, "sweep", records_tables(records()))
    written = ", ".join(f"{path} ({len(record['runs'])} runs)" for path, record in found.items())
    return (
        f"merged {seeds} runs from {GIT_REMOTE}: wrote {written}"
        + (f" and {NOISE_PAGE}'s tables" if page else "")
        + "".join(f"; {note}" for note in notes)
    )


def main() -> str:
    parser = argparse.ArgumentParser(
        prog="python -m trainstyles.tools.sweep_shards", description=__doc__
    )
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--shard", metavar="I/N", help="train shard I of N and push its runs")
    task.add_argument("--merge", action="store_true", help="pull every shard's runs, record them")
    parser.add_argument("--seeds", type=int, help="how many runs in all, the same on every host")
    parser.add_argument(
        "--replace", action="store_true", help="replace a record even with fewer runs"
    )
    args = parser.parse_args()
    if args.seeds is None:
        raise StageError("--seeds is needed: every host must split the same runs")
    if args.shard:
        return run_shard(*parse_shard(args.shard), args.seeds)
    return merge(args.seeds, args.replace)


if __name__ == "__main__":
    run_stage(main)
