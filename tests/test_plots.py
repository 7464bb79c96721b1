"""dvc.yaml's overlaid curves through the repository's template (.dvc/plots/styles.json): two
revisions of made-up curves, filled into it by DVC's own code as `dvc plots diff` does, drawn by
vl-convert. The colour must be the style, the dash the revision. test_browser and test_report
check the same of a real run, in the browser and in the report's PNGs."""

import shutil
from pathlib import Path

import pytest
import vl_convert
from dvc.render.match import match_defs_renderers
from dvc.repo import Repo
from ruamel.yaml import YAML

from conftest import (
    CURVES,
    CURVES_TEMPLATE,
    REPO,
    assert_colour_is_series_and_dash_is_revision,
    drawn_lines,
)
from trainstyles.pipeline.params import STYLES

COLUMNS = ("val_accuracy", "val_loss", "learning_rate", "grad_norm", "clip_norm")
REVISIONS = ["workspace", "base"]
# DVC's own calls into pygtrie warn of its coming API, once per plot: nothing of ours to change.
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")


def write_curves(repo: Path, shift: float) -> None:
    """Three epochs of every column, other for each style and for each `shift`."""
    for index, style in enumerate(STYLES):
        rows = [",".join(("epoch", *COLUMNS))]
        rows += [f"{epoch}," + ",".join([str(epoch + index + shift)] * len(COLUMNS))
                 for epoch in (1, 2, 3)]  # fmt: skip
        (repo / "plots" / f"{style}.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, dict]:
    """The lines of each curve plot of this checkout's dvc.yaml, a base's beside the workspace's."""
    root = tmp_path_factory.mktemp("plots")
    Repo.init(root, no_scm=True)
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(CURVES_TEMPLATE.parent, root / CURVES_TEMPLATE.parent.relative_to(REPO))
    (root / "plots").mkdir()
    shown = {}
    with Repo(root) as repo:
        for revision, shift in zip(REVISIONS, (0.5, 0.0), strict=True):
            write_curves(root, shift)
            shown[revision] = repo.plots.show(targets=[*CURVES, "grad_norm"])["workspace"]
        renderers = match_defs_renderers(shown, templates_dir=repo.plots.templates_dir)
    return {
        plot.renderer.name: drawn_lines(
            vl_convert.vegalite_to_svg(plot.renderer.get_filled_template(), allowed_base_urls=[])
        )
        for plot in renderers
    }


@pytest.mark.parametrize("plot", CURVES)
def test_each_style_has_a_colour_of_its_own_and_each_revision_a_dash(drawn, plot):
    assert_colour_is_series_and_dash_is_revision(drawn[plot], list(STYLES), REVISIONS)


def test_grad_norm_has_a_colour_per_field(drawn):
    [grad_norm] = [plot["grad_norm"] for plot in YAML(typ="safe").load(REPO / "dvc.yaml")["plots"]
                   if "grad_norm" in plot]  # fmt: skip
    [fields] = grad_norm["y"].values()
    assert_colour_is_series_and_dash_is_revision(drawn["grad_norm"], fields, REVISIONS)
