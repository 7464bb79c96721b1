"""`train.jit_compile` is a real switch: true compiles every style's steps with XLA, false none,
and the default, cpu, all of them where they train on a CPU (as every test here does).
Keras drops XLA from fit() without a word while TensorFlow's op determinism is on, so the
switch once reached only the raw loop (determinism.deterministic_kernels)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIT_STYLES, REPO
from trainstyles.pipeline.params import STYLES

pytestmark = pytest.mark.slow

# Each given style trains one epoch on tiny data, in turn, in one process; XLA writes every
# module it compiles to XLA_FLAGS' dump directory, so each style's are the ones that appeared
# while it trained. A line per style says how many there are now, and what Keras made of
# compile(jit_compile=…).
TRAIN = """
import sys, tempfile
from pathlib import Path
from conftest import learnable_split, tiny_params
from trainstyles.pipeline.resume import Backup
from trainstyles.pipeline.styles import style_module
from trainstyles.pipeline.training import train_on

jit, dump, *styles = sys.argv[1:]
jit = {"true": True, "false": False}.get(jit, jit)
for style in styles:
    params = tiny_params(train={"jit_compile": jit}, **{style: {"epochs": 1}})
    with tempfile.TemporaryDirectory() as work:
        model, _ = train_on(
            style_module(style).train, params, learnable_split(256, 0), learnable_split(64, 1),
            Backup(Path(work) / "backup", "xla"), Path(work) / "logs",
        )
    modules = len(list(Path(dump).glob("*.txt")))
    print("trained:", style, modules, model.jit_compile)
"""


def compiled_by_xla(tmp_path: Path, jit: bool | str) -> dict[str, tuple[int, str]]:
    """Each style's count of the modules XLA compiled while it trained, and what its model's
    jit_compile says, from one process that trains them all."""
    dump = tmp_path / "xla"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        "XLA_FLAGS": f"--xla_dump_to={dump}",
    }
    run = subprocess.run(
        [sys.executable, "-c", TRAIN, str(jit).lower(), str(dump), *STYLES],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    trained = [line.split()[1:] for line in run.stdout.splitlines() if line.startswith("trained:")]
    assert tuple(style for style, _, _ in trained) == STYLES
    counts = [0] + [int(count) for _, count, _ in trained]
    return {
        style: (counts[index + 1] - counts[index], said)
        for index, (style, _, said) in enumerate(trained)
    }


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[bool | str, dict[str, tuple[int, str]]]:
    return {
        jit: compiled_by_xla(tmp_path_factory.mktemp("xla"), jit) for jit in (True, False, "cpu")
    }


@pytest.mark.parametrize("jit", [True, "cpu"])
@pytest.mark.parametrize("style", STYLES)
def test_jit_compile_true_or_cpu_on_a_cpu_trains_each_style_through_xla(compiled, style, jit):
    modules, said = compiled[jit][style]
    assert modules > 0, f"{style}: XLA compiled nothing"
    if style in FIT_STYLES:  # what Keras made of compile(jit_compile=True)
        assert said == "True"


def test_jit_compile_false_trains_no_style_through_xla(compiled):
    assert compiled[False] == {style: (0, "False") for style in STYLES}
