"""dvc.yaml must say what each stage really reads, or DVC re-runs too little (or too much); and
every style of params.STYLES must have its stage, its place in evaluate, its curves and its
model's artifact."""

import re
import subprocess
import sys

import pytest
from gto.constants import assert_name_is_valid
from ruamel.yaml import YAML

from conftest import REPO
from trainstyles.pipeline.params import STYLES

PIPELINE = YAML(typ="safe").load(REPO / "dvc.yaml")
STAGES = PIPELINE["stages"]
# The modules a stage's script imports, those it imports inside its functions once its params
# are valid (the TensorFlow part), and for a training stage (`train.py <style>`) its style's, by
# name.
LIST_IMPORTED_CODE = """
import ast, importlib, importlib.util, pathlib, sys
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for node in ast.walk(ast.parse(pathlib.Path(sys.argv[1]).read_text())):
    if isinstance(node, ast.ImportFrom) and node.module.startswith("trainstyles"):
        importlib.import_module(node.module)
if sys.argv[2:]:
    from trainstyles.pipeline.styles import style_module
    style_module(sys.argv[2])
for module in list(sys.modules.values()):
    path = pathlib.Path(getattr(module, "__file__", None) or "/").resolve()
    if path.is_relative_to(pathlib.Path("src").resolve()):
        print(path.relative_to(pathlib.Path.cwd()))
"""


def script_and_args(stage: str) -> list[str]:
    return STAGES[stage]["cmd"].split(" python ", 1)[1].split()


@pytest.mark.slow  # a process per stage, most of them loading TensorFlow
@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_are_exactly_the_modules_the_stage_imports(stage):
    script, *args = script_and_args(stage)
    imported = subprocess.run(
        [sys.executable, "-c", LIST_IMPORTED_CODE, script, *args],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    code_deps = [dep for dep in STAGES[stage]["deps"] if dep.startswith("src/")]
    assert sorted(code_deps) == sorted(imported)
    assert script in STAGES[stage]["deps"]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_has_its_stage_reading_exactly_its_own_params_and_not_the_test_set(style):
    assert script_and_args(style) == ["stages/train.py", style]
    assert STAGES[style]["params"] == ["seed", "model", "train", "distribute", style]
    assert "data/split/test" not in STAGES[style]["deps"]
    assert [next(iter(out)) if isinstance(out, dict) else out for out in STAGES[style]["outs"]] == [
        f"models/{style}.keras",
        f"plots/{style}.csv",
        f"metrics/machine/{style}.json",
    ]


@pytest.mark.parametrize("style", STYLES)
def test_evaluate_reads_each_styles_model_and_curves_and_writes_its_metrics(style):
    evaluate = STAGES["evaluate"]
    assert {f"models/{style}.keras", f"plots/{style}.csv"} <= set(evaluate["deps"])
    assert style in evaluate["params"]
    assert f"metrics/{style}.json" in [next(iter(metric)) for metric in evaluate["metrics"]]
    assert f"metrics/timing/{style}.json" in PIPELINE["metrics"]


def test_what_each_stage_took_is_a_top_level_metric_not_an_out():
    """run_stage writes metrics/timing/<stage>.json for every stage: `dvc metrics show` lists
    them all, and no stage hashes them (they differ from run to run)."""
    assert sorted(PIPELINE["metrics"]) == sorted(f"metrics/timing/{stage}.json" for stage in STAGES)
    outs = [next(iter(out)) if isinstance(out, dict) else out for s in STAGES.values()
            for out in s.get("outs", []) + s.get("metrics", [])]  # fmt: skip
    assert not [out for out in outs if out.startswith("metrics/timing")]


def test_the_curves_overlay_every_style_and_only_the_styles():
    stages = {*STYLES, "prepare", "split", "evaluate"}
    assert set(STAGES) == stages
    for plot in PIPELINE["plots"]:
        [(name, spec)] = plot.items()
        if name in ("val_accuracy", "val_loss", "learning_rate"):
            assert list(spec["y"]) == [f"plots/{style}.csv" for style in STYLES], name
    confusion = [name for plot in PIPELINE["plots"] for name in plot if "confusion/" in name]
    assert confusion == [f"plots/confusion/{style}.csv" for style in STYLES]


def model_artifact(style: str) -> str:
    """The name `dvc artifacts get` takes for a style's model: DVC's docs ask a name for letters,
    digits and dashes."""
    return f"{style.replace('_', '-')}-model"


def test_each_styles_model_is_one_artifact_and_no_artifact_points_elsewhere():
    artifacts = PIPELINE["artifacts"]
    for name in artifacts:
        assert_name_is_valid(name)  # DVC's own check of a name, before `dvc artifacts get`
    assert {name: spec["path"] for name, spec in artifacts.items()} == {
        model_artifact(style): f"models/{style}.keras" for style in STYLES
    }
    for style in STYLES:
        spec = artifacts[model_artifact(style)]
        assert spec["type"] == "model"
        assert spec["labels"] == ["keras", "fashion-mnist", "mlp", style]
        assert "Fashion-MNIST" in spec["desc"] and style in spec["desc"]


def test_pipeline_md_lists_each_models_artifact():
    page = (REPO / "docs" / "pipeline.md").read_text()
    section = page.split("\n## Models as artifacts\n", 1)[1]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `(models/[^`]+)` \|$", section, re.MULTILINE)
    assert dict(rows) == {name: spec["path"] for name, spec in PIPELINE["artifacts"].items()}
