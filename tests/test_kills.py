"""A stage killed while it writes leaves each output whole or absent: never a partial file or a
mix of old and new files for DVC to cache. Each stage is killed with SIGKILL (no clean-up runs)
as soon as its temporary output appears, then re-run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL, copy_repo, dvc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    copy = copy_repo(tmp_path_factory.mktemp("kills"), SMALL)
    dvc(copy, "repro")
    return copy


def killed_when(repo: Path, stage: str, temporary: Path) -> None:
    """Start `stage` and SIGKILL it once `temporary` exists; fail if it never appears."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    process = subprocess.Popen(
        [sys.executable, f"stages/{stage}.py"], cwd=repo, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not temporary.exists() and process.poll() is None:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, f"{stage} ended before {temporary} appeared"


def files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*")
            if path.is_file()}  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "output", "temporary"),
    [
        ("prepare", "data/prepared", "data/.prepared.tmp"),
        ("split", "data/split", "data/.split.tmp"),
        ("evaluate", "plots/confusion", "plots/.confusion.tmp"),
    ],
)
def test_a_kill_while_writing_leaves_the_old_output_whole(repo, stage, output, temporary):
    before = files(repo / output)
    killed_when(repo, stage, repo / temporary)
    assert files(repo / output) == before  # the old directory, untouched, never a mix
    assert not [p for p in (repo / "metrics").rglob("*") if ".tmp" in p.name]
    dvc(repo, "repro", "--force", "--single-item", stage)  # and the next run cleans up
    assert not (repo / temporary).exists()
    assert files(repo / output) == before  # the same inputs, the same bytes
