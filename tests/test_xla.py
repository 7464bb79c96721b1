"""`train.jit_compile` is a real switch: true compiles every style's steps with XLA, false none.
Keras drops XLA from fit() without a word while TensorFlow's op determinism is on, so the
switch once reached only the raw loop (determinism.deterministic_kernels)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIT_STYLES, REPO
from trainstyles.params import STYLES

pytestmark = pytest.mark.slow

# Each given style trains one epoch on tiny data; XLA writes every module it compiles to
# XLA_FLAGS' dump directory, and the last line says what Keras made of compile(jit_compile=…).
TRAIN = """
import sys, tempfile
from pathlib import Path
from conftest import learnable_split, tiny_params
from trainstyles.resume import Backup
from trainstyles.styles import style_module
from trainstyles.training import train_on

jit, *styles = sys.argv[1:]
for style in styles:
    params = tiny_params(train={"jit_compile": jit == "true"}, **{style: {"epochs": 1}})
    with tempfile.TemporaryDirectory() as work:
        model, _ = train_on(
            style_module(style).train, params, learnable_split(256, 0), learnable_split(64, 1),
            Backup(Path(work) / "backup", "xla"), Path(work) / "logs",
        )
    print("jit_compile:", style, model.jit_compile)
"""


def compiled_by_xla(tmp_path: Path, jit: bool, *styles: str) -> tuple[list[str], list[str]]:
    """The modules XLA compiled while `styles` trained, and what each model's jit_compile says."""
    dump = tmp_path / "xla"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        "XLA_FLAGS": f"--xla_dump_to={dump}",
    }
    run = subprocess.run(
        [sys.executable, "-c", TRAIN, str(jit).lower(), *styles],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    modules = sorted(path.name for path in dump.glob("*.txt")) if dump.is_dir() else []
    lines = run.stdout.splitlines()
    return modules, [line.split(": ", 1)[1] for line in lines if line.startswith("jit_compile: ")]


@pytest.mark.parametrize("style", STYLES)
def test_jit_compile_true_trains_each_style_through_xla(tmp_path, style):
    modules, said = compiled_by_xla(tmp_path, True, style)
    assert modules, f"{style}: XLA compiled nothing"
    if style in FIT_STYLES:  # what Keras made of compile(jit_compile=True)
        assert said == [f"{style} True"]


def test_jit_compile_false_trains_no_style_through_xla(tmp_path):
    modules, said = compiled_by_xla(tmp_path, False, *STYLES)
    assert modules == []
    assert said == [f"{style} False" for style in STYLES]
