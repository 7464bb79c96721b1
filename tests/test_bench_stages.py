"""The bench's pipeline figures: each stage's wall time and peak memory as the stage recorded
them (stage.run_stage), read after a real `dvc repro -f`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from trainstyles.tools.bench.stages import timed_repro

pytestmark = pytest.mark.slow  # runs DVC

# A stage that holds `megabytes` for `seconds`, run by DVC as the pipeline's stages are.
STAGE = """
import sys, time
from trainstyles.pipeline.stage import run_stage

def main():
    held = bytearray(int(sys.argv[1]) * 2**20)
    time.sleep(float(sys.argv[2]))
    return f"held {len(held)} bytes"

run_stage(main, name=sys.argv[3], timed=True)
"""

# `small` writes an out for `large` to depend on: DVC runs them in that order.
DVC_YAML = """
stages:
  small:
    cmd: python stage.py 10 0 small && touch small.txt
    outs: [small.txt]
  large:
    cmd: python stage.py 150 0.5 large
    deps: [small.txt]
"""


def test_each_stage_is_read_from_its_own_record_in_dvc_yamls_order(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    for command in (["git", "init", "-q"], [bin_dir / "dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True)
    seconds, stages = timed_repro(tmp_path, env)
    assert list(stages) == ["small", "large"]
    assert stages["large"]["seconds"] >= 0.5 and seconds > stages["large"]["seconds"]
    assert stages["small"]["peak_rss_mb"] < 100
    assert 150 < stages["large"]["peak_rss_mb"] < 250
