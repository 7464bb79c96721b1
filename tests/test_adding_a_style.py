"""A new style, added to a temporary copy by exactly the steps of docs/adding-a-style.md: the
guide's code blocks applied where they say, its list of dvc.yaml lines added. The copy then
trains it with `dvc repro`, and the style must appear in `dvc metrics show`, the report, the
equivalence proof (its claim against train_step) and the fault tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import (
    REPO,
    UNKNOWN_KIND,
    commit,
    committed_checkout,
    copy_run,
    dvc,
    edit_params,
    in_its_shell,
    make,
    own_code,
    ready_for_make,
    relabel_workspace_run,
    unknown_kind_cpuinfo,
)
from trainstyles.pipeline.machine import CPUINFO_VARIABLE
from trainstyles.pipeline.params import STYLES

pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "adding-a-style.md"
NEW = "train_accum"
INSIDE = "TRAINSTYLES_GUIDE_COPY"  # set where the guide's copy runs its own tests
# A fenced block whose info string says where it goes: ```python file=PATH, append-to=PATH, or
# after="LINE" / before="LINE" in=PATH ('LINE' for a line that holds double quotes).
PLACED_BLOCK = re.compile(r"^```\w+ (.+?)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PLACE = re.compile(r"""([\w-]+)=("[^"]*"|'[^']*'|\S+)""")


def unquoted(value: str) -> str:
    return value[1:-1] if value[:1] in "\"'" else value


def guide_blocks() -> list[tuple[dict, str]]:
    return [
        ({key: unquoted(value) for key, value in PLACE.findall(info)}, text)
        for info, text in PLACED_BLOCK.findall(GUIDE.read_text())
    ]


def apply_block(repo: Path, place: dict, text: str) -> None:
    if "file" in place:
        (repo / place["file"]).write_text(text)
        return
    if "append-to" in place:
        with (repo / place["append-to"]).open("a") as target:
            target.write(text)
        return
    path = repo / place["in"]
    source = path.read_text()
    anchor = (place.get("after") or place["before"]) + "\n"
    at = [match.start() for match in re.finditer(f"^{re.escape(anchor)}", source, re.MULTILINE)]
    assert len(at) == 1, f"{place}: the guide's anchor must name one line of {path.name}"
    cut = at[0] + len(anchor) if "after" in place else at[0]
    if path.suffix == ".py" and text.startswith(("class ", "def ")):
        text = "\n\n" + text  # a top-level definition: two blank lines before it, as PEP 8 has
    path.write_text(source[:cut] + text + source[cut:])


def add_dvc_yaml_lines(repo: Path) -> None:
    """The guide's list of the style's lines in evaluate, the metrics and the plots."""
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    pipeline = yaml.load(repo / "dvc.yaml")
    evaluate = pipeline["stages"]["evaluate"]
    evaluate["params"].append(NEW)
    evaluate["deps"].extend(
        [f"models/{NEW}.keras", f"plots/{NEW}.csv", "src/trainstyles/pipeline/styles/accum.py"]
    )
    evaluate["metrics"].append({f"metrics/{NEW}.json": {"cache": False}})
    pipeline["metrics"].append(f"metrics/timing/{NEW}.json")
    for plot in pipeline["plots"]:
        [(name, spec)] = plot.items()
        if name in ("val_accuracy", "val_loss", "learning_rate"):
            spec["y"][f"plots/{NEW}.csv"] = name
    confusion = {"title": f"Test confusion matrix, {NEW}", "template": "confusion"}
    pipeline["plots"].append(
        {f"plots/confusion/{NEW}.csv": {**confusion, "x": "actual", "y": "predicted"}}
    )
    yaml.dump(pipeline, repo / "dvc.yaml")


def follow_guide(repo: Path) -> None:
    """Steps 1 to 3 of the guide, in `repo`."""
    blocks = guide_blocks()
    assert blocks[0][0] == {"file": "src/trainstyles/pipeline/styles/accum.py"}
    for place, text in blocks:
        apply_block(repo, place, text)
    add_dvc_yaml_lines(repo)


def step_4_commands() -> list[str]:
    """The commands of the guide's step 4, its one console block, as the page has them."""
    [block] = re.findall(r"^```console\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)
    return [line[2:].split(" # ")[0].strip() for line in block.splitlines() if line[:2] == "$ "]


def shell(repo: Path, command: str) -> subprocess.CompletedProcess:
    """A command as a user types it in `repo`: this environment's tools first on PATH."""
    return subprocess.run(
        ["bash", "-c", command], cwd=repo, env=in_its_shell(repo),
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def repo(small_run, tmp_path_factory) -> Path:
    """The guide's steps 1 to 3 followed in a copy of the session's small run."""
    copy = ready_for_make(copy_run(small_run, tmp_path_factory.mktemp("new-style") / "repo"))
    follow_guide(copy)
    edit_params(copy / "params.yaml", {NEW: {"epochs": 2}})
    commit(copy, f"add {NEW}")
    return copy


@pytest.fixture(scope="module")
def checked(repo) -> dict[str, str]:
    """Step 4 of the guide, run in the copy as written: each command must succeed. Its output
    by command, for the tests below."""
    said = {}
    for command in step_4_commands():
        result = shell(repo, command)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        said[command] = result.stdout
    return said


def said_by(checked: dict[str, str], start: str) -> str:
    [output] = [output for command, output in checked.items() if command.startswith(start)]
    return output


def run_in(repo: Path, *command: str) -> str:
    result = subprocess.run(
        [sys.executable, *command], cwd=repo, env=own_code(repo),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_new_style_is_last_in_the_copys_list_of_styles(repo):
    listed = run_in(
        repo, "-c", "from trainstyles.pipeline.params import STYLES; print(*STYLES)"
    ).split()
    assert listed == [*STYLES, NEW]


def test_step_4_of_the_guide_runs_as_written(checked):
    assert [command.split()[:2] for command in checked] == [
        ["pytest", "tests/test_dvc_yaml.py"], ["dvc", "repro"], ["dvc", "metrics"],
        ["make", "equivalence"], ["make", "report"], ["pytest", "tests/test_faults.py"],
    ]  # fmt: skip
    assert re.search(r"\b[1-9]\d* passed", said_by(checked, "pytest tests/test_dvc_yaml.py"))


def test_the_new_style_has_a_colour_of_its_own_in_the_copys_curves(repo):
    run_in(repo, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_plots.py")


def test_metrics_show_has_a_row_for_the_new_style(repo, checked):
    assert f"metrics/{NEW}.json" in said_by(checked, "dvc metrics show")
    files = next(iter(json.loads(dvc(repo, "metrics", "show", "--json")).values()))["data"]
    row = files[f"metrics/{NEW}.json"]["data"]
    assert row["epochs_run"] == 2
    assert 0 < row["test_accuracy"] <= 1
    assert set(row) == set(files[f"metrics/{STYLES[0]}.json"]["data"])


def test_the_report_shows_the_new_style(repo, checked):
    page = (repo / "report" / "report.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith(f"| `{NEW}`")]
    assert len(rows) >= 2  # the figures table and the altitude table
    assert any("mean gradient of several batches" in row for row in rows)
    assert (
        f"](confusion-{NEW}.png)" in page and (repo / "report" / f"confusion-{NEW}.png").is_file()
    )


def test_the_equivalence_proof_holds_the_new_style_to_train_step(checked):
    said = said_by(checked, "make equivalence")
    claim = next(line for line in said.splitlines() if line.strip().startswith(NEW))
    assert "(accumulate=1) ≡ train_step" in claim
    assert said.splitlines()[-1] == "equivalence: proven"


def test_the_fault_tests_cover_the_new_style(checked):
    said = said_by(checked, "pytest tests/test_faults.py")
    assert re.search(r"\b[1-9]\d* passed", said), said


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The guide followed in a copy of this checkout as a user has it: its committed run, its
    sweep records (which do not know the new style) and all, on the real params, and its
    workspace run trained, as far as it says, on a kind of machine no record has."""
    copy = committed_checkout(tmp_path_factory.mktemp("guide-checkout") / "repo")
    follow_guide(ready_for_make(copy))
    commit(copy, f"add {NEW}")
    relabel_workspace_run(copy)
    return copy


@pytest.mark.real
@pytest.mark.skipif(bool(os.environ.get(INSIDE)), reason="the guide's copy runs this file too")
@pytest.mark.parametrize("target", ["test", "test-real"])
def test_after_the_guide_make_test_and_make_test_real_pass(checkout, target, tmp_path):
    """A new style, not in any sweep record yet, keeps both tiers a user runs green on a kind
    of machine no record has: the fast one, and the acceptance run on the real data (where it
    is held to having learned), which the nearest record judges, standing in."""
    env = {INSIDE: "1", CPUINFO_VARIABLE: str(unknown_kind_cpuinfo(tmp_path / "cpuinfo"))}
    # The copy's forced re-run would train all five styles on the real data a second time for
    # what the checkout's own acceptance run holds already: the bytes of a re-run.
    result = make(checkout, target, env=env | {"PYTEST_ADDOPTS": "-k 'not forced_rerun'"})
    said = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, said
    assert re.search(r"\b[1-9]\d* passed", said), said
    if target == "test-real":
        stand_in = f"standing in for {UNKNOWN_KIND}, which has no sweep record"
        assert stand_in in result.stdout, said
