"""The acceptance run: the whole pipeline on the real Fashion-MNIST, in a fresh copy.

Minutes long, so `make test` leaves it out; .ci/run runs it (`pytest -m real`).
"""

import csv
import json

import pytest

from conftest import REPO, copy_repo, dvc
from trainstyles.pipeline.outputs import at_chance
from trainstyles.pipeline.params import STYLES
from trainstyles.tools import noise

pytestmark = pytest.mark.real
# Each style's floor is its mean − 4 sd over the committed seed sweep of the kind of machine the
# run trained on, else the nearest kind's (noise.reference_for): a run passes it unless something
# broke. test_noise.py ties the floors to the records.


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    copy = copy_repo(tmp_path_factory.mktemp("real"))
    dvc(copy, "repro")
    return copy


@pytest.fixture(scope="module")
def judged_by(repo, request) -> noise.Reference:
    """The record of the kind the run trained on, said on the terminal: which one judged it."""
    chosen = noise.reference_for(noise.run_machine(repo), REPO / noise.RECORDS_DIR)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture:  # a fixture's output is captured, and dropped when tests pass
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nthe acceptance run: {chosen.reason}")
    return chosen


@pytest.mark.parametrize("style", STYLES)
def test_test_accuracy_reaches_the_sweeps_floor(repo, judged_by, style):
    """A style the sweep has not measured yet (one just added: "not in the sweep") has no
    floor of its own; it must still have learned, as the stage's own check has it."""
    summary = judged_by.record["summary"] if judged_by.record else {}
    results = json.loads((repo / "metrics" / f"{style}.json").read_text())
    if style in summary:
        assert results["test_accuracy"] >= noise.floor(summary[style]["test_accuracy"]), (
            judged_by.reason
        )
    else:
        assert not at_chance(results, num_classes=10)


def test_grad_norm_starts_above_the_clip_and_falls(repo):
    with (repo / "plots" / "train_clipped.csv").open() as stream:
        norms = [float(row["grad_norm"]) for row in csv.DictReader(stream)]
    assert norms[0] > 1.0
    assert norms[-1] < norms[0]


def test_pipeline_is_up_to_date_afterwards(repo):
    assert "Data and pipelines are up to date." in dvc(repo, "status")


def test_a_forced_rerun_changes_no_line_of_the_lock(repo):
    lock = (repo / "dvc.lock").read_text()
    dvc(repo, "repro", "--force")
    assert (repo / "dvc.lock").read_text() == lock
