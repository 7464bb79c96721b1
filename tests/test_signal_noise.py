"""Signal or noise, end to end: a seed sweep of a small run, then revisions judged against it.

A change that alters only the rounding (`model.hidden_order`, the stand-in for another machine)
must be reported within noise on every metric; cutting train_clipped from 5 epochs to 1 must be
reported beyond noise for its test accuracy; and a base revision trained on another machine
must be reproduced here by the same-machine A/B.
"""

import subprocess

import pytest

from conftest import commit, copy_repo, dvc, edit_params, run_module, table_rows
from trainstyles.pipeline.params import STYLES, load_params
from trainstyles.tools import noise, sweep
from trainstyles.tools.machines import kind_name, kind_slug

pytestmark = pytest.mark.slow
PARAMS = {
    "split": {"val_size": 500, "train_limit": 2500, "test_limit": 1000},
    "train": {"batch_size": 64},
    **{style: {"epochs": 2} for style in STYLES},
    "train_clipped": {"epochs": 5},
}
SWEEP_SEEDS = 5


def report(repo, *args: str) -> str:
    result = run_module(repo, "trainstyles.tools.report", *args)
    assert result.returncode == 0, result.stderr
    return (repo / "report" / "report.md").read_text()


def metric_rows(page: str) -> list[list[str]]:
    return [row for style in STYLES for row in table_rows(page, f"`metrics/{style}.json`")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A small run, committed with its sweep; then each change of the tests, as a commit."""
    copy = copy_repo(tmp_path_factory.mktemp("noise"), PARAMS)
    dvc(copy, "repro")
    commit(copy, "a small run")
    swept = run_module(copy, "trainstyles.tools.sweep", "--seeds", str(SWEEP_SEEDS))
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert swept.stdout.splitlines()[-1].startswith("sweep: trained 4 styles under seeds 43–47 in ")
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    # The committed run is untouched: only this kind's record, and docs/noise.md's tables,
    # changed.
    record = str(noise.record_path(sweep.expected_machine(load_params(copy / "params.yaml"))))
    assert {line[3:] for line in changed if line} <= {record, "docs/noise.md"}
    assert swept.stdout.splitlines()[-1].endswith(f"wrote {record} and docs/noise.md's tables")
    commit(copy, "its sweep")
    return copy


@pytest.fixture(scope="module")
def rounding_page(repo) -> str:
    edit_params(repo / "params.yaml", {"model": {"hidden_order": 1}})
    dvc(repo, "repro")
    commit(repo, "another summation order")
    return report(repo, "--against", "HEAD~1")


@pytest.fixture(scope="module")
def epochs_page(repo, rounding_page) -> str:
    edit_params(repo / "params.yaml", {"train_clipped": {"epochs": 1}})
    dvc(repo, "repro")
    commit(repo, "train_clipped for one epoch")
    return report(repo, "--against", "HEAD~1")


def test_the_sweep_writes_the_record_and_leaves_the_workspace_alone(repo):
    [(path, record)] = noise.records(repo / noise.RECORDS_DIR).items()
    assert path.name == f"{kind_slug(record['machine'])}.json"
    assert record["seeds"] == [43, 44, 45, 46, 47] and record["hidden_orders"] == [1, 2, 3, 4, 5]
    for style in STYLES:
        for metric, band in record["summary"][style].items():
            assert band["n"] == SWEEP_SEEDS, (style, metric)
            assert band["min"] <= band["mean"] <= band["max"]
    assert record["summary"]["train_clipped"]["test_accuracy"]["sd"] > 0  # seeds do differ
    assert record["machine"]["cpu"]["model_name"]
    listed = dvc(repo, "exp", "list", "--all-commits", "--name-only").split()
    assert {f"sweep-{seed}" for seed in record["seeds"]} <= set(listed)
    assert "nothing to commit" in commit_status(repo)


def commit_status(repo) -> str:
    import subprocess  # noqa: PLC0415

    return (
        subprocess.run(
            ["git", "status", "--short"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
        or "nothing to commit"
    )


def test_the_report_shows_the_spread_and_the_paired_verdicts(repo, rounding_page):
    [(path, record)] = noise.records(repo / noise.RECORDS_DIR).items()
    kind = kind_name(record["machine"])
    assert f"## Noise: every style over 5 seeds on {kind}" in rounding_page
    said = (
        f"The run is judged by the noise of 5 seeded runs on its own kind of machine, {kind} "
        f"({path.relative_to(repo)})."
    )
    assert f"\n\n{said}\n\n" in rounding_page
    assert f"(a 99 % prediction bound for two runs). {said}" in rounding_page
    for style in STYLES:
        (row,) = [row for row in table_rows(rounding_page, f"`{style}`") if len(row) == 8]
        assert " ± " in row[1] and "–" in row[2]
    verdicts = table_rows(rounding_page, "`train_fit` − `train_step`")
    assert [row[-1] for row in verdicts] == ["identical in every run"] * 2
    assert "paired t-test over the 5 runs" in rounding_page


def test_a_change_of_rounding_alone_is_within_noise_on_every_metric(rounding_page):
    rows = metric_rows(rounding_page)
    assert rows  # the order did change the trained bits, and so the metrics
    assert {row[-1] for row in rows} == {"within noise"}
    assert "**No change beyond noise**" in rounding_page
    assert "Base and head trained on the same kind of machine" in rounding_page


def test_five_epochs_cut_to_one_is_beyond_noise(epochs_page):
    clipped = {row[1]: row for row in table_rows(epochs_page, "`metrics/train_clipped.json`")}
    assert clipped["`test_accuracy`"][-1] == "**beyond noise**"
    assert float(clipped["`test_accuracy`"][4]) < 0
    for style in ("train_fit", "train_step", "train_raw"):
        assert not table_rows(epochs_page, f"`metrics/{style}.json`"), style
    assert "changed metrics are beyond noise.**" in epochs_page
    assert "The record was made under other params (train_clipped.epochs)" in epochs_page


def test_a_base_from_another_machine_is_said_and_reproduced_here(repo, epochs_page):
    """The base claims another CPU for train_raw. The plain report says the machines differ;
    the same-machine report retrains the base's train_raw here, whose bits then equal head's."""
    machine_file = repo / "metrics" / "machine" / "train_raw.json"
    here = machine_file.read_text()
    machine_file.write_text(here.replace('"model_name": "', '"model_name": "Another '))
    dvc(repo, "commit", "--force", "train_raw")
    commit(repo, "a base whose train_raw trained elsewhere")
    machine_file.write_text(here)
    dvc(repo, "commit", "--force", "train_raw")
    commit(repo, "the head, trained here")

    plain = report(repo, "--against", "HEAD~1")
    assert (
        "**Base and head trained on different kinds of machine** (they differ in cpu.model_name)"
        in plain
    )
    same = report(repo, "--against", "HEAD~1", "--same-machine")
    assert "## Against `HEAD~1`, both reproduced on this machine" in same
    assert "Base and head both trained on this machine: " in same
    assert not metric_rows(same)
    assert "**No change beyond noise**: no metric moved" in same
