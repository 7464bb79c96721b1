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

from ruamel.yaml import YAML

from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.stage import MACHINE_DIR, METRICS_DIR, TIMING_DIR
from trainstyles.tools.bench.figures import median_range
from trainstyles.tools.bench.timing import SQUARE_GEMM, matmul_flops_per_second
from trainstyles.tools.commands import copy_worktree
from trainstyles.tools.machines import kind_name


def timed_repro(repo: Path, env: dict) -> tuple[float, dict]:
    """`dvc repro -f` in `repo`: its wall time, and each stage's wall time and peak RSS as the
    stage recorded them itself (stage.run_stage), in the order dvc.yaml lists the stages."""
    start = time.perf_counter()
    done = subprocess.run(
        [Path(sys.executable).parent / "dvc", "repro", "-f"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"dvc repro -f failed in {repo}:\n{done.stderr}")
    stages = {}
    for stage in YAML(typ="safe").load(repo / "dvc.yaml")["stages"]:
        took = json.loads((repo / TIMING_DIR / f"{stage}.json").read_text())
        stages[stage] = {"seconds": took["wall_seconds"], "peak_rss_mb": took["peak_rss_mb"]}
    return seconds, stages


def pipeline_figures(
    repo: Path, say: Callable[[str], None], cpu_kind: str, noop_repeats: int = 5
) -> dict:
    """The whole pipeline forced once in a copy of `repo`, then `dvc repro` with nothing to do.
    Each stage is measured on the kind its trainer recorded, or on `cpu_kind`, the CPU's."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        copy = Path(work)
        copy_worktree(repo, copy, leave_out=(f"{TIMING_DIR}/",))  # each figure is this run's
        gemm = matmul_flops_per_second(*SQUARE_GEMM)  # how fast the machine was just then
        say(f"dvc repro -f in a copy of the repository ({copy}) ...")
        full, stages = timed_repro(copy, env)
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
