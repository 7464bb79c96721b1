"""dvc and git as the report, the sweep and the same-machine A/B call them: one line on failure."""

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
