"""The wall through the package: `pipeline/` (what `dvc repro` runs) never imports `tools/` (what
reads its outputs), so that no edit to a tool can change a trained model, and the resume
fingerprint and dvc.yaml's code deps need not cover the tools (docs/architecture.md)."""

import ast
import re

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "trainstyles"
PIPELINE_MODULES = sorted(PACKAGE.joinpath("pipeline").rglob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    """Every module an import statement names (`from trainstyles import tools` as
    trainstyles.tools), and every string that is a module's name, as import_module takes it."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names += [node.value] if re.fullmatch(r"[\w.]+", node.value) else []
    return names


@pytest.mark.parametrize("path", PIPELINE_MODULES, ids=lambda path: path.stem)
def test_no_pipeline_module_imports_a_tool_module(path):
    tools = [
        name
        for name in imported_names(ast.parse(path.read_text()))
        if name == "trainstyles.tools" or name.startswith("trainstyles.tools.")
    ]
    assert not tools, f"{path.relative_to(REPO)} imports {tools}: the pipeline never imports tools"


def test_every_module_is_on_one_side_of_the_wall():
    modules = {path.relative_to(PACKAGE).parts[0] for path in PACKAGE.glob("*")}
    assert modules - {"__pycache__"} == {"__init__.py", "pipeline", "tools"}


def test_the_architecture_page_has_a_line_for_each_module_and_none_that_is_gone():
    """docs/architecture.md's tables name every module of both sides once, and only those."""
    page = (REPO / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\| `((?:pipeline|tools)/[\w/]+\.py)` \|", page, re.MULTILINE)
    modules = [
        str(path.relative_to(PACKAGE))
        for side in ("pipeline", "tools")
        for path in PACKAGE.joinpath(side).rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "styles"
    ]
    assert sorted(listed) == sorted(modules)
