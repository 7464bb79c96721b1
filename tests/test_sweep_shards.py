"""The seed sweep spread over hosts: which runs each shard trains, the merge's refusals, and, end
to end, two hosts' shards pushed through a git remote and an S3 remote (on 127.0.0.1) and merged
on a third into the very record one host's sweep of the same seeds writes."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import (
    REPO,
    add_s3_remote,
    clone_ready_for_make,
    committed,
    copy_run,
    dvc,
    identify,
    run_module,
)
from trainstyles import StageError
from trainstyles.pipeline.params import STYLES
from trainstyles.tools import noise, sweep, sweep_shards
from trainstyles.tools.machines import kind_name

COMMITTED = noise.records(committed() / noise.RECORDS_DIR)
SEEDS = 2  # the fewest a record takes: one run on each of two hosts


@pytest.mark.parametrize("seeds", range(2, 8))
def test_every_run_falls_to_exactly_one_shard_and_run_k_to_shard_k_mod_n(seeds):
    runs = sweep.planned_runs(42, 0, seeds)
    for count in range(1, seeds + 1):
        shards = [sweep_shards.shard_runs(runs, index, count) for index in range(1, count + 1)]
        assert sorted(run["seed"] for shard in shards for run in shard) == list(
            range(43, 43 + seeds)
        )
        for index, shard in enumerate(shards, start=1):
            assert all((run["seed"] - 43) % count == index - 1 for run in shard), (count, index)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1-2", "2", "a/b", "1/0"])
def test_a_shard_that_is_not_i_of_n_is_refused(text):
    with pytest.raises(StageError, match=rf"^--shard {text}: give I/N, the I-th of N shards"):
        sweep_shards.parse_shard(text)


def test_more_shards_than_runs_are_refused_before_anything_trains():
    with pytest.raises(StageError) as refused:
        sweep_shards.shard_runs(sweep.planned_runs(42, 0, 2), 1, 3)
    assert str(refused.value) == (
        "--shard 1/3: 2 runs leave some of 3 shards none; spread them over at most 2"
    )


def results_of(record: dict, machine: dict | None = None, **params) -> list[dict]:
    """A committed record's runs as the merge reads them from experiments: each with the full
    params it trained with (`params` replacing keys section by section) and its machine."""
    raw = YAML(typ="safe").load(REPO / "params.yaml")
    for section, values in params.items():
        raw[section] = {**raw[section], **values}
    return [
        {
            **run,
            "params": {
                **raw,
                "seed": run["seed"],
                "model": {**raw["model"], "hidden_order": run["hidden_order"]},
            },
            "machines": dict.fromkeys(STYLES, machine or record["machine"]),
            "train_seconds": 10.0,
        }
        for run in record["runs"]
    ]


def test_runs_of_mixed_params_are_refused_naming_the_key(tmp_path):
    """Seed and summation order differ from run to run by design; anything else means the shards
    did not sweep one configuration, and their spread would measure the difference."""
    record = next(iter(COMMITTED.values()))
    found, notes = sweep_shards.kind_records(results_of(record), directory=tmp_path)
    assert [len(r["runs"]) for r in found.values()] == [len(record["runs"])] and notes == []
    mixed = results_of(record)
    batch_size = YAML(typ="safe").load(REPO / "params.yaml")["train"]["batch_size"]
    mixed[-1] = results_of(record, train={"batch_size": batch_size + 1})[-1]
    with pytest.raises(StageError) as refused:
        sweep_shards.kind_records(mixed, directory=tmp_path)
    assert str(refused.value) == (
        f"{mixed[-1]['name']} ran with other params than {mixed[0]['name']} (train.batch_size): "
        "a record's runs differ only in seed and model.hidden_order; run every shard on one "
        "commit, params.yaml unedited"
    )
    assert not list(tmp_path.iterdir())


def test_each_kind_gets_its_own_runs_and_a_kind_with_one_run_no_record(tmp_path):
    (first, record), (_, other) = list(COMMITTED.items())[:2]
    results = results_of(record)
    results[-1]["machines"] = dict.fromkeys(STYLES, other["machine"])
    found, notes = sweep_shards.kind_records(results, directory=tmp_path)
    assert list(found) == [tmp_path / first.name]
    assert found[tmp_path / first.name]["runs"] == record["runs"][:-1]
    assert notes == [
        f"{kind_name(other['machine'])} trained 1 run ({results[-1]['name']}), too few for a record"
    ]


def test_a_merge_never_silently_replaces_a_larger_record(tmp_path):
    """The rule of `make sweep --seeds`: a record of fewer runs would widen the threshold and
    lower the floors, so it is refused unless --replace, and then nothing is written."""
    path, record = next(iter(COMMITTED.items()))
    held = len(record["runs"])
    (tmp_path / path.name).write_text(json.dumps(record))
    fewer = results_of(record)[:-1]
    with pytest.raises(StageError) as refused:
        sweep_shards.kind_records(fewer, directory=tmp_path)
    kind = kind_name(record["machine"])
    assert str(refused.value) == (
        f"{held - 1} runs on {kind}: {tmp_path / path.name} holds {held} runs, and a record of "
        f"fewer would replace it (its threshold wider, its floors lower); ask for {held} or "
        "more, or --replace"
    )
    found, _ = sweep_shards.kind_records(fewer, replace=True, directory=tmp_path)
    assert len(found[tmp_path / path.name]["runs"]) == held - 1
    assert sweep_shards.kind_records(results_of(record), directory=tmp_path)[0]  # as many: fine


def shards_module(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run_module(repo, "trainstyles.tools.sweep_shards", *args)


@pytest.fixture(scope="module")
def hosts(small_run, s3_server, tmp_path_factory) -> dict[str, Path]:
    """Four clones of one bare git remote whose DVC remote is an S3 bucket holding the session's
    small run: two hosts for the shards, one to merge and one to sweep the same seeds alone."""
    root = tmp_path_factory.mktemp("shards")
    origin = copy_run(small_run, root / "origin")
    add_s3_remote(origin, s3_server, "team-sweeps")
    dvc(origin, "push")
    remote = root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(remote)], check=True)
    clones = {}
    for name in ("shard-1", "shard-2", "merge", "one-host"):
        clones[name] = clone_ready_for_make(remote, root / name)
        identify(clones[name])
        dvc(clones[name], "pull")  # what a host does before it trains: no data step runs again
    return clones


@pytest.fixture(scope="module")
def swept(hosts) -> dict:
    """Both shards and the one-host sweep, side by side (each trains with its own fixed thread
    count, so running beside another changes no bit), then the merge."""
    commands = [
        (hosts["shard-1"], "trainstyles.tools.sweep_shards", "--shard", "1/2"),
        (hosts["shard-2"], "trainstyles.tools.sweep_shards", "--shard", "2/2"),
        (hosts["one-host"], "trainstyles.tools.sweep"),
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        done = list(pool.map(lambda c: run_module(c[0], *c[1:], "--seeds", str(SEEDS)), commands))
    for result in done:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    merged = shards_module(hosts["merge"], "--merge", "--seeds", str(SEEDS))
    assert merged.returncode == 0, merged.stdout[-2000:] + merged.stderr[-2000:]
    return {"shards": done[:2], "merged": merged}


@pytest.mark.slow
def test_shards_merged_on_a_third_host_equal_one_hosts_sweep_in_every_metric(hosts, swept):
    [(merged_path, merged)] = noise.records(hosts["merge"] / noise.RECORDS_DIR).items()
    [(alone_path, alone)] = noise.records(hosts["one-host"] / noise.RECORDS_DIR).items()
    assert merged_path.name == alone_path.name  # one kind of machine trained both
    assert merged["seeds"] == alone["seeds"] == [43, 44]
    assert merged["runs"] == alone["runs"]  # every metric of every style of every run
    for key in ("hidden_orders", "summary", "machine", "params"):
        assert merged[key] == alone[key], key
    assert merged["seconds"] > 0
    assert swept["shards"][0].stdout.splitlines()[-1].endswith("pushed sweep-43 to origin")
    assert swept["shards"][1].stdout.splitlines()[-1].endswith("pushed sweep-44 to origin")
    assert swept["merged"].stdout.splitlines()[-1] == (
        f"sweep_shards: merged 2 runs from origin: wrote {merged_path.relative_to(hosts['merge'])}"
        " (2 runs) and docs/noise.md's tables"
    )


@pytest.mark.slow
def test_the_merge_pulls_each_experiments_models_from_the_dvc_remote(hosts, swept):
    """`dvc exp push` sent each experiment's models to the bucket, and `dvc exp pull` brought
    them into the cache of the merging host, which trained nothing."""
    merge = hosts["merge"]
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=merge, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(ref.rsplit("/", 1)[1] for ref in refs) == ["sweep-43", "sweep-44"]
    for ref in refs:
        lock = subprocess.run(
            ["git", "show", f"{ref}:dvc.lock"], cwd=merge, capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        outs = [
            out
            for stage in YAML(typ="safe").load(lock)["stages"].values()
            for out in stage.get("outs", [])
            if out["path"].startswith("models/")
        ]
        assert len(outs) == len(STYLES)
        for out in outs:
            cached = merge / ".dvc" / "cache" / "files" / "md5" / out["md5"][:2] / out["md5"][2:]
            assert cached.is_file(), (ref, out["path"])


@pytest.mark.slow
def test_a_merge_refuses_to_replace_a_larger_record_and_writes_nothing(hosts, swept):
    merge = hosts["merge"]
    [(path, record)] = noise.records(merge / noise.RECORDS_DIR).items()
    larger = {**record, "runs": record["runs"] * 2}
    path.write_text(json.dumps(larger))
    page = (merge / "docs" / "noise.md").read_text()
    refused = shards_module(merge, "--merge", "--seeds", str(SEEDS))
    assert refused.returncode == 1
    kind = kind_name(record["machine"])
    assert refused.stderr.splitlines() == [
        f"sweep_shards: error: 2 runs on {kind}: {path.relative_to(merge)} holds 4 runs, and a "
        "record of fewer would replace it (its threshold wider, its floors lower); ask for 4 or "
        "more, or --replace"
    ]
    assert json.loads(path.read_text()) == larger
    assert (merge / "docs" / "noise.md").read_text() == page


WORKFLOW = REPO / ".github" / "workflows" / "sweep.yml"


def plan(shards: int, seeds: int, output: Path) -> subprocess.CompletedProcess:
    """The workflow's plan step, as a runner runs it."""
    [step] = YAML(typ="safe").load(WORKFLOW)["jobs"]["plan"]["steps"]
    env = {"PATH": "/usr/bin:/bin", "SHARDS": str(shards), "SEEDS": str(seeds)}
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env | {"GITHUB_OUTPUT": str(output)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_workflow_numbers_its_shards_and_refuses_more_shards_than_seeds(tmp_path):
    output = tmp_path / "output"
    assert plan(3, 10, output).returncode == 0
    assert output.read_text() == "list=[1,2,3]\n"
    refused = plan(3, 2, tmp_path / "none")
    assert (refused.returncode, refused.stdout) == (
        1,
        "::error::shards must be from 1 to seeds (2), not 3\n",
    )


def test_the_workflows_make_commands_are_targets_of_the_makefile():
    jobs = YAML(typ="safe").load(WORKFLOW)["jobs"]
    commands = [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]
    targets = {
        word.split()[1] for run in commands for word in run.splitlines() if word.startswith("make ")
    }
    assert targets == {"setup", "sweep", "sweep-merge"}
    makefile = (REPO / "Makefile").read_text()
    assert all(f"\n{target}:" in makefile for target in targets)
