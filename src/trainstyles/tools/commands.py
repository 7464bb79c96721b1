"""dvc and git as the report, the sweep, the bench and the same-machine A/B call them: one line on
failure; and a copy of a worktree to run the pipeline in without touching its outputs."""

import shutil
import subprocess
import sys
from pathlib import Path

from trainstyles import StageError


def dvc(*args: str, cwd: Path = Path(), capture: bool = True) -> str:
    """A dvc command of this environment (the dvc beside this python); its output, if captured."""
    return run(["dvc", *args], [sys.executable, "-m", "dvc", *args], cwd, capture)


def git(*args: str, cwd: Path = Path()) -> str:
    return run(["git", *args], ["git", *args], cwd, capture=True)


def run(shown: list[str], command: list[str], cwd: Path, capture: bool) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        where = f" in {cwd}" if cwd != Path() else ""
        problem = " ".join((result.stderr or result.stdout or "").split())[-400:]
        raise StageError(
            f"{' '.join(shown[:4])}{where} failed" + (f": {problem}" if problem else "")
        )
    return result.stdout or ""


def stages_run(repro_output: str) -> set[str]:
    """The stages that a `dvc repro` or `dvc exp run` says it ran."""
    return {
        line.split("'")[1] for line in repro_output.splitlines() if line.startswith("Running stage")
    }


def copy_worktree(source: Path, destination: Path, leave_out: tuple[str, ...] = ()) -> None:
    """The files git sees in `source` (committed or not, ignored ones left out), but none whose
    path starts with one of `leave_out`, as a new git repository: a clean place to run the whole
    pipeline without touching `source`'s outputs (the bench, the end-to-end tests)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=source, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        if (source / name).is_file() and not name.startswith(leave_out):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, destination / name)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
