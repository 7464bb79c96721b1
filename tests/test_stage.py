"""run_stage's record of what a stage took: written whole as the stage's last act on success,
never on failure, and only for the stages of dvc.yaml (a tool that uses run_stage records none)."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from trainstyles import StageError
from trainstyles.pipeline.stage import TIMING_DIR, run_stage, stage_record


def test_a_timed_stage_records_its_wall_time_memory_and_own_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def main() -> str:
        time.sleep(0.2)
        stage_record().figures["train_seconds"] = 0.1  # as a trainer adds its training time
        return "done"

    run_stage(main, name="tiny", timed=True)
    record = json.loads((TIMING_DIR / "tiny.json").read_text())
    assert 0.2 <= record["wall_seconds"] < 2
    assert 10 < record["peak_rss_mb"] < 10_000
    assert record["train_seconds"] == 0.1
    assert [path.name for path in TIMING_DIR.iterdir()] == ["tiny.json"]  # no temporary left


@pytest.mark.parametrize(
    "failure", [StageError("it broke"), OSError(28, "No space left on device"), KeyboardInterrupt]
)
def test_a_stage_that_fails_records_nothing(tmp_path, monkeypatch, failure):
    monkeypatch.chdir(tmp_path)

    def main() -> str:
        stage_record().figures["train_seconds"] = 0.1
        raise failure

    with pytest.raises(SystemExit):
        run_stage(main, name="tiny", timed=True)
    assert not list(tmp_path.rglob("*"))


def test_a_tool_records_nothing_nor_does_a_stage_that_declines(tmp_path, monkeypatch):
    """A tool (the report, the sweep) is no stage of dvc.yaml; a worker that is not the chief
    clears its record's path, as its outputs are not the stage's."""
    monkeypatch.chdir(tmp_path)
    run_stage(lambda: "done", name="report")

    def not_the_chief() -> str:
        stage_record().path = None
        return "done"

    run_stage(not_the_chief, name="worker", timed=True)
    assert not list(tmp_path.rglob("*"))
    assert stage_record().path is None  # outside a stage, figures go nowhere


# A stage as DVC runs it: DVC's shell execs it, here a process that held 300 MB first. The stage
# holds 100 MB.
EXECED_STAGE = """
import os, sys
from trainstyles.pipeline.stage import run_stage

if sys.argv[1:] == ["exec"]:
    held = bytearray(300 * 2**20)
    os.execv(sys.executable, [sys.executable, __file__])

def main():
    held = bytearray(100 * 2**20)
    return f"held {len(held)} bytes"

run_stage(main, timed=True)
"""


def test_the_peak_memory_is_the_stages_own_not_that_of_the_process_that_execed_it(tmp_path):
    """getrusage's ru_maxrss would say 300 MB: Linux keeps it across exec."""
    script = tmp_path / "execed.py"
    script.write_text(EXECED_STAGE)
    result = subprocess.run(
        [sys.executable, str(script), "exec"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"execed: held {100 * 2**20} bytes\n"
    record = json.loads((tmp_path / TIMING_DIR / "execed.json").read_text())
    assert 100 < record["peak_rss_mb"] < 200
