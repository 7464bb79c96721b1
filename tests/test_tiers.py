"""docs/testing.md's table says which tier holds each guarantee: the tiers it names must be those
of the tests it names, read from their markers (a test or its module marked `slow` or `real`)."""

import ast
import re
from functools import cache

from conftest import REPO

PAGE = REPO / "docs" / "testing.md"
TESTS = REPO / "tests"
NAMED = re.compile(r"`(test_\w+)(?:::(test_\w+))?(?:\[[^\]`]*\])?`")


def marks(node: ast.AST) -> set[str]:
    """The names X of every `pytest.mark.X` in `node`."""
    return {
        found.attr
        for found in ast.walk(node)
        if isinstance(found, ast.Attribute)
        and isinstance(found.value, ast.Attribute)
        and found.value.attr == "mark"
    }


@cache
def tiers_of(module: str) -> dict[str, str]:
    """Each test function of `module` and its tier: real, slow or fast."""
    tree = ast.parse((TESTS / f"{module}.py").read_text())
    module_marks = set().union(
        *(
            marks(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(target, "id", None) == "pytestmark" for target in node.targets)
        )
    )
    tiers = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            found = module_marks | set().union(*(marks(d) for d in node.decorator_list))
            tiers[node.name] = next((t for t in ("real", "slow") if t in found), "fast")
    return tiers


def table_rows() -> list[tuple[str, str, str]]:
    """The guarantee table's rows: (guarantee, held by, tier)."""
    rows = [line.strip("|").split(" | ") for line in PAGE.read_text().splitlines()]
    header = next(i for i, row in enumerate(rows) if row[:2] == [" guarantee", "held by"])
    body = [row for row in rows[header + 2 :] if len(row) == 4]
    return [(row[0].strip(), row[1], row[3].strip()) for row in body]


def test_each_guarantee_names_the_tiers_of_the_tests_that_hold_it():
    rows = table_rows()
    assert len(rows) > 20
    for guarantee, held_by, tier in rows:
        named = NAMED.findall(held_by)
        assert named, guarantee
        tiers = set()
        for module, test in named:
            module_tiers = tiers_of(module)
            assert not test or test in module_tiers, f"{module}::{test} does not exist"
            tiers |= {module_tiers[test]} if test else set(module_tiers.values())
        said = {word.strip() for word in tier.split(",")}
        assert said == tiers, f"{guarantee}: the table says {tier}, the markers {sorted(tiers)}"


def test_a_slow_mark_on_the_test_or_its_module_decides_its_tier():
    """The control: modules with each kind of mark read as marked."""
    assert set(tiers_of("test_real_run").values()) == {"real"}
    assert set(tiers_of("test_pipeline").values()) == {"slow"}
    assert set(tiers_of("test_params").values()) == {"fast"}
    faults = tiers_of("test_faults")
    assert faults["test_a_diverging_loss_stops_training_naming_epoch_and_step"] == "slow"
    assert faults["test_bad_params_stop_the_stage_before_any_work"] == "fast"
