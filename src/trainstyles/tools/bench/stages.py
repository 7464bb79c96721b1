"""The bench's measurements of the pipeline: each stage's wall time and peak memory in a full
`dvc repro -f` (in a copy of the repository), and a `dvc repro` with nothing to do."""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.stage import MACHINE_DIR, METRICS_DIR
from trainstyles.tools.bench.figures import median_range
from trainstyles.tools.bench.timing import SQUARE_GEMM, matmul_flops_per_second
from trainstyles.tools.commands import copy_worktree
from trainstyles.tools.machines import kind_name


def peak_rss_kb(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux's VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def stage_of(command_line: list[str]) -> str | None:
    """The stage a process runs, from its command line: the style that `stages/train.py` is
    given, or the script's name (`stages/evaluate.py`: evaluate); None for other processes."""
    for index, arg in enumerate(command_line):
        if arg.startswith("stages/"):
            return next(iter(command_line[index + 1 :]), None) or Path(arg).stem
    return None


def watched_repro(repo: Path, env: dict) -> tuple[float, dict]:
    """`dvc repro -f` in `repo`: its wall time, and each stage's wall time and peak RSS.

    DVC runs each stage as `python stages/<script>.py [style]`; polling the process tree every 50 ms
    finds it, times it from first to last sight and keeps the highest VmHWM it showed. The
    high-water mark only grows, so a sample in the stage's last 50 ms is all it can miss.
    """
    import psutil  # noqa: PLC0415

    stages: dict[str, dict] = {}
    start = time.perf_counter()
    dvc = subprocess.Popen(
        [Path(sys.executable).parent / "dvc", "repro", "-f"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    root = psutil.Process(dvc.pid)
    while dvc.poll() is None:
        now = time.perf_counter()
        try:
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                stage = stage_of(child.cmdline())
            except psutil.Error:
                continue
            if not stage:
                continue
            seen = stages.setdefault(stage, {"first": now, "last": now, "rss_kb": 0})
            seen["last"] = now
            seen["rss_kb"] = max(seen["rss_kb"], peak_rss_kb(child.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if dvc.returncode != 0:
        raise RuntimeError(f"dvc repro -f failed in {repo}:\n{dvc.stderr.read()}")
    return seconds, {
        stage: {"seconds": seen["last"] - seen["first"], "peak_rss_mb": seen["rss_kb"] / 1024}
        for stage, seen in stages.items()
    }


def pipeline_figures(
    repo: Path, say: Callable[[str], None], cpu_kind: str, noop_repeats: int = 5
) -> dict:
    """The whole pipeline forced once in a copy of `repo`, then `dvc repro` with nothing to do.
    Each stage is measured on the kind its trainer recorded, or on `cpu_kind`, the CPU's."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        copy = Path(work)
        copy_worktree(repo, copy)
        gemm = matmul_flops_per_second(*SQUARE_GEMM)  # how fast the machine was just then
        say(f"dvc repro -f in a copy of the repository ({copy}) ...")
        full, stages = watched_repro(copy, env)
        say(f"dvc repro -f: {full:.1f} s")
        # How many epochs each style trained in that run, for its fixed overhead.
        epochs_run = {
            style: json.loads((copy / METRICS_DIR / f"{style}.json").read_text())["epochs_run"]
            for style in STYLES
        }
        trained_on = {
            style: kind_name(json.loads((copy / MACHINE_DIR / f"{style}.json").read_text()))
            for style in STYLES
        }
        # evaluate asks for the devices the trainers asked for (train.device): it runs where
        # they ran. prepare and split are NumPy's, on the CPU.
        run_kind = trained_on[STYLES[0]]
        kinds = trained_on | {"evaluate": run_kind}
        for stage, figures in stages.items():
            figures["measured_on"] = kinds.get(stage, cpu_kind)
        noop = []
        for _ in range(noop_repeats):
            start = time.perf_counter()
            subprocess.run(
                [bin_dir / "dvc", "repro"], cwd=copy, env=env, capture_output=True, check=True
            )
            noop.append(time.perf_counter() - start)
    return {
        "full_repro_seconds": full,
        "epochs_run": epochs_run,
        "stages": stages,
        "measured_on": run_kind,
        "noop_repro_seconds": median_range(noop),
        "gemm_flops_per_second": gemm,
    }
