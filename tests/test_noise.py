"""The statistics behind every "beyond noise" and "within noise" the project prints."""

import json
import re
import shutil
import statistics
import subprocess
import sys

import pytest

from conftest import (
    REPO,
    UNKNOWN_KIND,
    committed,
    committed_checkout,
    own_code,
    relabel_workspace_run,
)
from trainstyles import StageError
from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.stage import METRICS_DIR
from trainstyles.tools import noise, sweep
from trainstyles.tools.machines import kind_name, kind_slug

# The committed run and records, as HEAD holds them: the workspace's run may since have been
# trained by any kind of machine, one with no record among them.
COMMITTED = committed()
RECORDS = noise.records(COMMITTED / noise.RECORDS_DIR)
# Seed 42's test accuracy as another machine kind trained it: the committed run of these params
# before it was trained again on the kind of the committed records. The committed run's own
# kind is read from the committed metrics.
SEED_42_ELSEWHERE = {
    "AMD EPYC 25/1": {
        "train_fit": 0.8925, "train_step": 0.8925, "train_raw": 0.8913, "train_clipped": 0.8705,
    },
}  # fmt: skip


def committed_run() -> tuple[dict, dict]:
    """The committed run's machine (its first style's) and each style's test accuracy."""
    accuracy = {  # a style added since the committed run has no figures yet
        style: json.loads(path.read_text())["test_accuracy"]
        for style in STYLES
        if (path := COMMITTED / METRICS_DIR / f"{style}.json").is_file()
    }
    return noise.run_machine(COMMITTED), accuracy


def seed_42_by_kind() -> dict[str, dict[str, float]]:
    machine, accuracy = committed_run()
    return SEED_42_ELSEWHERE | {kind_name(machine): accuracy}


@pytest.fixture(scope="module", params=list(RECORDS), ids=lambda path: path.stem)
def record(request) -> dict:
    return RECORDS[request.param]


def runs_of(values: dict[str, list[float]]) -> dict:
    """A record with the given test accuracies per style, run by run."""
    count = len(next(iter(values.values())))
    runs = [
        {"metrics": {style: {"test_accuracy": values[style][i]} for style in values}}
        for i in range(count)
    ]
    return {"runs": runs, "summary": noise.summarise_runs(runs)}


def test_the_summary_is_mean_sample_sd_and_range():
    assert noise.summary([1.0, 2.0, 4.0]) == {
        "n": 3, "mean": 7 / 3, "sd": statistics.stdev([1.0, 2.0, 4.0]), "min": 1.0, "max": 4.0,
    }  # fmt: skip


def test_k_is_the_99_percent_prediction_bound_for_two_runs():
    assert noise.k_factor(5) == pytest.approx(2**0.5 * 4.604, abs=1e-3)
    assert noise.k_factor(10) == pytest.approx(2**0.5 * 3.250, abs=1e-3)
    assert noise.k_factor(3) > noise.k_factor(5) > noise.k_factor(30)  # fewer runs, wider


def test_a_change_is_judged_against_k_sd():
    band = noise.summary([0.86, 0.87, 0.88, 0.87, 0.87])
    bound = noise.threshold(band)
    assert noise.judge(bound * 0.99, band) == "within noise"
    assert noise.judge(-bound * 1.01, band) == "beyond noise"
    assert noise.judge(0.5, None) == "not in the sweep"


def test_holm_adjusts_the_smallest_p_most_and_keeps_the_order():
    assert noise.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert noise.holm([0.5]) == [0.5]


def test_pairs_are_compared_seed_by_seed():
    """A gap far smaller than the spread between seeds is still beyond noise when every seed
    shows it: the pairing removes the seed's share of the noise."""
    base = [0.861, 0.874, 0.868, 0.880, 0.857]
    record = runs_of(
        {
            "train_fit": base,
            "train_step": base,  # the same math: equal in every run
            "train_raw": [value - 0.003 + 0.0004 * (-1) ** i for i, value in enumerate(base)],
            "train_clipped": [value + 0.01 * (-1) ** i for i, value in enumerate(base)],
        }
    )
    verdicts = {pair["pair"]: pair["verdict"] for pair in noise.paired(record, "test_accuracy")}
    assert verdicts[("train_fit", "train_step")] == "identical in every run"
    assert verdicts[("train_fit", "train_raw")] == "beyond noise"
    assert verdicts[("train_fit", "train_clipped")] == "within noise"


def test_the_committed_record_summarises_its_runs_over_at_least_five_seeds(record):
    assert len(record["runs"]) >= 5
    assert record["seeds"] == [run["seed"] for run in record["runs"]]
    assert len(set(record["seeds"])) == len(record["seeds"])
    assert len(set(record["hidden_orders"])) == len(record["seeds"])  # a new order each run
    assert record["summary"] == noise.summarise_runs(record["runs"])
    # Only known styles; a style added since the sweep is "not in the sweep" until `make sweep`.
    assert set(record["summary"]) <= set(STYLES)
    assert record["machine"]["cpu"]["model_name"]


def test_the_committed_runs_own_record_was_made_under_the_committed_params(record):
    """The record of the committed run's kind is remade whenever a change moves the bits. One
    of a kind out of reach stays as it was, and the report names the params it was made under
    (report.noise_lines): it judges only as a stand-in, and says so."""
    from trainstyles.pipeline.params import load_params  # noqa: PLC0415

    params = load_params(REPO / "params.yaml").model_dump()
    assert record["params"].keys() <= noise.shared_params(params).keys()
    if kind_name(record["machine"]) == kind_name(committed_run()[0]):
        assert noise.params_apart(record, params) == []


def test_a_style_added_since_the_sweep_leaves_its_record_under_the_same_params(record):
    """As if the sweep ran before train_clipped was added: its section is new, nothing else."""
    before = {**record, "params": {k: v for k, v in record["params"].items() if k != STYLES[-1]}}
    assert noise.params_apart(before, {**record["params"], "seed": 42}) == []
    moved = {**record["params"], "train": {**record["params"]["train"], "batch_size": 64}}
    assert noise.params_apart(before, moved) == ["train.batch_size"]


@pytest.mark.parametrize("kind", list(seed_42_by_kind()))
def test_every_records_floors_pass_seed_42_as_each_known_kind_trained_it(record, kind):
    for style, accuracy in seed_42_by_kind()[kind].items():
        if style in record["summary"]:  # a style added since the sweep has no floor yet
            floor = noise.floor(record["summary"][style]["test_accuracy"])
            assert floor <= accuracy, (style, kind)
            assert floor > 0.8, style  # and still fails a model that learned little


def test_the_committed_run_is_judged_by_a_record_of_its_own_kind():
    machine, _ = committed_run()
    chosen = noise.reference_for(machine, COMMITTED / noise.RECORDS_DIR)
    assert chosen.path == COMMITTED / noise.RECORDS_DIR / f"{kind_slug(machine)}.json"
    assert f"on its own kind of machine, {kind_name(machine)} (" in chosen.reason


def test_a_record_is_filed_under_its_own_kind(record):
    assert RECORDS[COMMITTED / noise.record_path(record["machine"])] is record


def test_the_xeon_record_stays_as_made_and_the_avx2_kind_trains_other_bits():
    """docs/noise.md: the committed records come from two kinds with AVX-512; Intel Xeon
    6/106's was made under train.jit_compile: false and stays so (the report names that param
    when it stands in), while AMD EPYC 25/1, without AVX-512, trained seed 42 to other figures
    than the committed run."""
    from trainstyles.pipeline.params import load_params  # noqa: PLC0415

    by_kind = {kind_name(record["machine"]): record for record in RECORDS.values()}
    epyc, xeon = by_kind["AMD EPYC 25/17"], by_kind["Intel Xeon 6/106"]
    for record in (epyc, xeon):
        assert "avx512f" in record["machine"]["cpu"]["features"]
    assert epyc["machine"] != xeon["machine"]  # the control: two kinds, not one record twice
    params = load_params(REPO / "params.yaml").model_dump()
    assert noise.params_apart(xeon, params) == ["train.jit_compile"]
    assert xeon["params"]["train"]["jit_compile"] is False
    committed_kind = kind_name(noise.run_machine(COMMITTED))
    assert seed_42_by_kind()["AMD EPYC 25/1"] != seed_42_by_kind()[committed_kind]


def test_a_style_that_runs_its_whole_budget_has_no_spread_in_epochs_so_any_change_counts(record):
    """docs/comparing.md, "Acting on a verdict": in the committed records, train_raw and
    train_clipped run their `epochs` in every run, so `epochs_run` has sd 0 and any change to it
    is beyond noise; the early-stopped styles' counts vary with the seed."""
    for style in ("train_raw", "train_clipped"):
        band = record["summary"][style]["epochs_run"]
        assert band["sd"] == 0 and band["mean"] == record["params"][style]["epochs"], style
        assert noise.judge(-1, band) == "beyond noise"
    for style in ("train_fit", "train_step"):  # the control: a count that varies is judged
        band = record["summary"][style]["epochs_run"]
        assert band["sd"] > 0 and noise.judge(-1, band) == "within noise", style


@pytest.mark.slow
def test_a_workspace_run_of_a_kind_no_record_has_fails_no_test_of_the_committed_run(tmp_path):
    """The control: in a copy whose workspace run reads as trained on a kind no record has (as
    after `make repro` on a new machine), this module's tests still pass, and the run there
    is judged by the nearest record, standing in."""
    copy = committed_checkout(tmp_path / "repo")
    relabel_workspace_run(copy)
    workspace = noise.run_machine(copy)
    assert kind_name(workspace) == UNKNOWN_KIND
    chosen = noise.reference_for(workspace, copy / noise.RECORDS_DIR)
    assert f"standing in for {UNKNOWN_KIND}, which has no sweep record" in chosen.reason
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_noise.py"],
        cwd=copy, env=own_code(copy), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b[1-9]\d* passed", result.stdout), result.stdout


def fingerprint_of(model_name: str, family_model: str, features: list[str]) -> dict:
    return {
        "cpu": {"model_name": model_name, "family_model": family_model, "features": features},
        "devices": ["CPU:0"],
    }


def test_a_run_is_judged_by_its_kinds_record_else_the_nearest_and_says_which(tmp_path):
    epyc_avx512 = fingerprint_of("AMD EPYC", "25/17", ["avx2", "avx512f"])
    xeon = fingerprint_of("Intel(R) Xeon(R) Processor", "6/106", ["avx2", "avx512f"])
    for machine, runs in ((epyc_avx512, 10), (xeon, 5)):
        record = {"machine": machine, "runs": [{}] * runs}
        (tmp_path / f"{kind_slug(machine)}.json").write_text(json.dumps(record))
    own = noise.reference_for(xeon, tmp_path)
    assert own.path == tmp_path / "intel-xeon-6-106.json"
    assert own.reason == (
        "The run is judged by the noise of 5 seeded runs on its own kind of machine, Intel Xeon "
        f"6/106 ({own.path})."
    )
    epyc_avx2 = fingerprint_of("AMD EPYC", "25/1", ["avx2"])
    nearest = noise.reference_for(epyc_avx2, tmp_path)
    assert nearest.path == tmp_path / "amd-epyc-25-17.json"  # 2 keys apart; the Xeon 3
    assert nearest.reason == (
        f"The run is judged by the noise of 10 seeded runs on AMD EPYC 25/17 ({nearest.path}), "
        "standing in for AMD EPYC 25/1, which has no sweep record: the two differ in CPU family "
        "and model and instruction sets, and `make sweep` on AMD EPYC 25/1 records its own."
    )
    nothing = noise.reference_for(xeon, tmp_path / "none")
    assert nothing.record is None
    assert nothing.reason == (
        f"The run is not judged: {tmp_path / 'none'}/ holds no sweep record, and `make sweep` "
        "records one."
    )


def test_the_sweep_refuses_fewer_than_two_runs_before_it_queues_any():
    with pytest.raises(StageError, match=r"^--seeds 1: a spread needs at least 2 runs$"):
        sweep.sweep(1)


def test_a_smaller_sweep_never_silently_replaces_a_larger_record(tmp_path):
    """By default the sweep keeps the record's size; fewer runs are refused before anything is
    queued, unless --replace; more are always welcome."""
    out = tmp_path / "record.json"
    assert sweep.runs_wanted(None, out) == sweep.DEFAULT_RUNS  # no record yet
    shutil.copy(next(iter(RECORDS)), out)
    held = len(json.loads(out.read_text())["runs"])
    assert sweep.runs_wanted(None, out) == max(held, sweep.DEFAULT_RUNS)
    assert sweep.runs_wanted(held + 1, out) == held + 1
    with pytest.raises(StageError) as refused:
        sweep.runs_wanted(held - 1, out)
    assert str(refused.value) == (
        f"--seeds {held - 1}: {out} holds {held} runs, and a record of fewer would replace it "
        f"(its threshold wider, its floors lower); ask for {held} or more, or --replace"
    )
    assert sweep.runs_wanted(held - 1, out, replace=True) == held - 1


def test_the_sweep_reads_the_experiments_of_the_commit_it_queued_them_on(monkeypatch):
    """A commit made while the sweep runs moves HEAD; `dvc exp show` alone would then list none
    of the sweep's experiments, and a finished sweep would fail."""
    asked = []
    failed = {"state": "failed", "local": {"log": "the log"}}
    shown = [{"experiments": [{"name": "sweep-43", "executor": failed}]}]
    monkeypatch.setattr(sweep, "dvc", lambda *args: asked.append(args) or json.dumps(shown))
    run = {"name": "sweep-43", "seed": 43, "hidden_order": 1}
    with pytest.raises(StageError, match="experiment sweep-43 did not succeed: see the log"):
        sweep.experiment_results([run], "0123abc")
    assert asked == [("exp", "show", "--json", "--rev", "0123abc")]
