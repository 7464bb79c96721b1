"""dvc.yaml must say what each stage really reads, or DVC re-runs too little (or too much)."""

import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from conftest import REPO

STAGES = YAML(typ="safe").load(REPO / "dvc.yaml")["stages"]
LIST_IMPORTED_CODE = """
import importlib.util, pathlib, sys
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for module in list(sys.modules.values()):
    path = pathlib.Path(getattr(module, "__file__", None) or "/").resolve()
    if path.is_relative_to(pathlib.Path("src").resolve()):
        print(path.relative_to(pathlib.Path.cwd()))
"""


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_are_exactly_the_modules_the_stage_imports(stage):
    script = STAGES[stage]["cmd"].split()[-1]
    imported = subprocess.run(
        [sys.executable, "-c", LIST_IMPORTED_CODE, script],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    code_deps = [dep for dep in STAGES[stage]["deps"] if dep.startswith("src/")]
    assert sorted(code_deps) == sorted(imported)
    assert script in STAGES[stage]["deps"]


def test_trainers_read_exactly_their_own_params_and_not_the_test_set():
    for stage in ("train_fit", "train_step", "train_raw", "train_clipped"):
        assert STAGES[stage]["params"] == ["seed", "model", "train", "distribute", stage]
        assert "data/split/test" not in STAGES[stage]["deps"]
