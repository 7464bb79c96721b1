"""The comparison report from two commits of a temporary repository, and DVC experiments on it:
what the pull-request workflow does, short of posting the comment."""

import csv
import json
import struct
import subprocess
from pathlib import Path

import pytest
import vl_convert
from PIL import Image
from ruamel.yaml import YAML

from conftest import (
    CURVES,
    SMALL,
    assert_colour_is_series_and_dash_is_revision,
    commit,
    copy_run,
    drawn_lines,
    dvc,
    edit_params,
    run_module,
    stages_run,
    table_rows,
    template_colours,
)
from trainstyles import StageError
from trainstyles.pipeline.data import CLASS_NAMES
from trainstyles.pipeline.params import STYLES
from trainstyles.tools.report import code_lines, png_name, render_plots

pytestmark = pytest.mark.slow
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def repo(small_run, tmp_path_factory) -> Path:
    """Two commits: the session's small run, then the same with train_clipped cut to one epoch."""
    copy = copy_run(small_run, tmp_path_factory.mktemp("report") / "repo")
    edit_params(copy / "params.yaml", {"train_clipped": {"epochs": 1}})
    dvc(copy, "repro")
    commit(copy, "train_clipped for one epoch")
    return copy


def report(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run_module(repo, "trainstyles.tools.report", *args)


@pytest.fixture(scope="module")
def page(repo) -> str:
    result = report(repo, "--against", "HEAD~1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "report: wrote report/report.md and its PNGs, diffed against HEAD~1\n"
    return (repo / "report" / "report.md").read_text()


def test_the_side_by_side_table_has_each_styles_figures(repo, page):
    for style in STYLES:
        metrics = json.loads((repo / "metrics" / f"{style}.json").read_text())
        timing = json.loads((repo / "metrics" / "timing" / f"{style}.json").read_text())
        (row,) = [row for row in table_rows(page, f"`{style}`") if len(row) == 7]
        assert row[1:5] == [
            f"{metrics['test_accuracy']:.4f}",
            f"{metrics['test_loss']:.4f}",
            str(metrics["epochs_run"]),
            str(metrics["best_epoch"]),
        ]
        # Shown to one decimal: 1.55 may print as 1.6, a half-unit away plus float error.
        assert float(row[5]) == pytest.approx(timing["train_seconds"], abs=0.0501)
    assert table_rows(page, "`train_clipped`")[0][3] == "1"  # the second commit's one epoch


def test_the_diff_rows_show_what_the_second_commit_changed_and_nothing_else(page):
    (params_row,) = table_rows(page, "`params.yaml`")
    assert params_row == ["`params.yaml`", "`train_clipped.epochs`", "2", "1", "-1"]
    clipped = {row[1]: row for row in table_rows(page, "`metrics/train_clipped.json`")}
    # No sweep record in this copy: the rows say so rather than guess at the noise.
    assert clipped["`epochs_run`"][2:] == ["2", "1", "-1", "—", "no sweep record"]
    assert "`test_accuracy`" in clipped
    # The other styles did not re-run, and evaluate re-made their figures to the byte.
    for style in ("train_fit", "train_step", "train_raw"):
        assert not table_rows(page, f"`metrics/{style}.json`"), style
        assert not table_rows(page, f"`metrics/timing/{style}.json`"), style
    assert table_rows(page, "`metrics/timing/train_clipped.json`")


@pytest.fixture(scope="module")
def plots(repo, page) -> dict[str, dict]:
    """Each plot of the copy's dvc.yaml, as `dvc plots show` fills its Vega-Lite spec."""
    shown = json.loads(dvc(repo, "plots", "show", "--json"))
    assert "errors" not in shown
    return {plot_id: renders[0]["content"] for plot_id, renders in shown["data"].items()}


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_the_page_links_one_png_per_dvc_plot_under_its_title(repo, page, plots):
    assert {path.name for path in (repo / "report").glob("*.png")} == set(map(png_name, plots))
    for plot_id, spec in plots.items():
        name = png_name(plot_id)
        assert f"![{spec['title']['text']}]({name})" in page
        image = (repo / "report" / name).read_bytes()
        width, height = struct.unpack(">II", image[16:24])  # the PNG header's IHDR chunk
        assert image.startswith(PNG_MAGIC), name
        assert 400 <= width <= 3000 and 400 <= height <= 3000, (name, width, height)
    assert page.index("(val_accuracy.png)") < page.index("## How the styles agree")
    assert page.index("## How the styles agree") < page.index(f"(confusion-{STYLES[0]}.png)")


def test_each_png_is_dvcs_spec_drawn_as_it_stands(repo, plots, tmp_path):
    render_plots(plots, tmp_path)
    for plot_id in plots:
        name = png_name(plot_id)
        assert (tmp_path / name).read_bytes() == (repo / "report" / name).read_bytes(), name


def test_each_png_draws_each_style_in_its_colour(repo, plots):
    """Which line is which, from the same spec drawn as SVG (the PNGs are these specs drawn, as
    the test above holds), and each style's colour in the PNG itself."""
    colours = template_colours()
    for plot_id in CURVES:
        svg = vl_convert.vegalite_to_svg(plots[plot_id], allowed_base_urls=[])
        assert_colour_is_series_and_dash_is_revision(drawn_lines(svg), list(STYLES), ["workspace"])
        with Image.open(repo / "report" / png_name(plot_id)) as image:
            counts = image.convert("RGB").getcolors(maxcolors=1 << 24)
        pixels = {"#{:02x}{:02x}{:02x}".format(*rgb): count for count, rgb in counts}
        # At least a legend symbol's worth: the line of a style may lie under another's.
        assert {style for style in STYLES if pixels.get(colours[style], 0) >= 100} == set(STYLES)


def test_the_curves_carry_every_styles_values(repo, plots):
    for plot_id in CURVES:
        values = plots[plot_id]["data"]["values"]
        assert {row["filename"] for row in values} == {f"{style}.csv" for style in STYLES}
        for style in STYLES:
            drawn = [float(row[plot_id]) for row in values if row["filename"] == f"{style}.csv"]
            written = [float(row[plot_id]) for row in csv_rows(repo / "plots" / f"{style}.csv")]
            assert drawn == written, (plot_id, style)
    # grad_norm: the fields dvc.yaml names, from the one style's file it names.
    [grad_norm] = [plot["grad_norm"] for plot in YAML(typ="safe").load(repo / "dvc.yaml")["plots"]
                   if "grad_norm" in plot]  # fmt: skip
    [(source, fields)] = grad_norm["y"].items()
    drawn = {
        (row["field"], row["epoch"]): row["dvc_inferred_y_value"]
        for row in plots["grad_norm"]["data"]["values"]
    }
    assert drawn == {
        (field, row["epoch"]): row[field] for row in csv_rows(repo / source) for field in fields
    }


def test_a_confusion_matrix_per_style_holds_each_test_prediction(repo, plots):
    for style in STYLES:
        spec = plots[f"plots/confusion/{style}.csv"]
        assert spec["title"]["text"].endswith(style)
        drawn = [(row["actual"], row["predicted"]) for row in spec["data"]["values"]]
        written = csv_rows(repo / "plots" / "confusion" / f"{style}.csv")
        assert drawn == [(row["actual"], row["predicted"]) for row in written]
        assert len(drawn) == SMALL["split"]["test_limit"]
        assert {label for pair in drawn for label in pair} <= set(CLASS_NAMES)


@pytest.mark.parametrize(
    ("plot_id", "name"),
    [
        ("val_accuracy", "val_accuracy.png"),
        ("plots/confusion/train_fit.csv", "confusion-train_fit.png"),
        ("curves/a b:c.json", "curves-a-b-c.png"),
    ],
)
def test_each_plot_id_gives_a_file_safe_png_name(plot_id, name):
    assert png_name(plot_id) == name


def test_a_spec_that_asks_for_a_url_is_refused_not_fetched(tmp_path):
    spec = {"data": {"url": "https://example.com/data.csv"}, "mark": "point"}
    with pytest.raises(StageError, match=r"cannot draw plot remote: .*url not allowed"):
        render_plots({"remote": spec}, tmp_path)


CONFUSION = f"plots/confusion/{STYLES[0]}.csv"


def header_only(text: str) -> str:
    return text.splitlines(keepends=True)[0]


def unknown_template(text: str) -> str:
    return text.replace("template: confusion", "template: no_such")


@pytest.mark.parametrize(
    ("path", "edit", "error"),
    [
        (CONFUSION, None, f"dvc plots show: {CONFUSION}: [Errno 2] No such file or directory"),
        (CONFUSION, header_only, f"dvc plots show: {CONFUSION}: no data"),
        ("dvc.yaml", unknown_template, "dvc plots show --json failed: ERROR: unexpected error - "
         "Template 'no_such' not found"),
    ],
    ids=["a data file missing", "a plot with no data", "dvc plots show failing"],
)  # fmt: skip
def test_a_plot_dvc_cannot_show_is_one_line_and_exit_1(repo, tmp_path, path, edit, error):
    file = repo / path
    original = file.read_bytes()
    try:
        if edit is None:
            file.unlink()
        else:
            file.write_text(edit(original.decode()))
        result = report(repo, "--out", str(tmp_path))
    finally:
        file.write_bytes(original)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"report: error: {error}"), line


def test_the_altitude_table_counts_each_styles_code(page):
    measured = {
        style: int(row[2])
        for style in STYLES
        for row in table_rows(page, f"`{style}`")
        if len(row) == 3  # the altitude table's; the figures table has 7 cells
    }
    styles_dir = Path(__file__).parents[1] / "src" / "trainstyles" / "pipeline" / "styles"
    assert set(measured) == set(STYLES)
    for style, lines in measured.items():
        assert lines == code_lines(styles_dir / f"{style.removeprefix('train_')}.py")
    assert max(measured, key=measured.get) == "train_raw"  # it writes what fit() did


def test_code_lines_skip_docstrings_comments_and_blank_lines(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('"""Doc\nstring."""\n\n# why\ndef f():\n    """Doc."""\n    return 1  # 1\n')
    assert code_lines(module) == 2


def test_an_unknown_revision_is_one_line_and_exit_1(repo):
    result = report(repo, "--against", "no-such-revision")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("report: error: dvc params diff no-such-revision failed:")


def test_experiments_run_queue_and_show_each_styles_metrics(repo):
    """Last in this module: `dvc exp run` changes the workspace."""
    ran = dvc(repo, "exp", "run", "-n", "clip-half", "-S", "train_clipped.clip_norm=0.5")
    assert stages_run(ran) == {"train_clipped", "evaluate"}
    # The queued experiments train with the code they were queued with: it says so as it trains.
    # No other code will do: not the workspace's, broken after queueing, nor an installed copy.
    module = repo / "src" / "trainstyles" / "pipeline" / "styles" / "clipped.py"
    code = module.read_text()
    start = "    style = params.train_clipped\n"
    module.write_text(code.replace(start, f'    print("the queued code trains")\n{start}'))
    try:
        dvc(repo, "exp", "run", "--queue", "-S", "train_clipped.clip_norm=0.25,2.0")
        module.write_text(code + '\nraise SystemExit("the workspace code ran")\n')
        ran = dvc(repo, "exp", "run", "--run-all")
        stopped = run_module(repo, "trainstyles.pipeline.styles.clipped")
        assert stopped.stderr.strip().endswith("the workspace code ran")  # the control
    finally:
        module.write_text(code)
    assert ran.count("the queued code trains") == 2, ran

    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    experiments = {
        experiment["name"] or experiment["rev"]: experiment["data"]
        for commit_row in shown
        for experiment in commit_row.get("experiments") or []
        for experiment in experiment["revs"]
    }
    clip_norms = {
        name: data["params"]["params.yaml"]["data"]["train_clipped"]["clip_norm"]
        for name, data in experiments.items()
    }
    assert sorted(clip_norms.values()) == [0.25, 0.5, 2.0]
    assert clip_norms["clip-half"] == 0.5
    for data in experiments.values():
        for style in STYLES:
            row = data["metrics"][f"metrics/{style}.json"]["data"]
            assert 0.1 < row["test_accuracy"] <= 1.0


def test_the_report_changes_no_file_but_its_own_and_the_readme_table_is_a_command_of_its_own(
    repo,
):
    """Looking changes nothing: the report adds no change that git sees. `make readme`
    (--readme) then rewrites the README's committed-run table, and only that."""

    def changed() -> set[str]:
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        done = subprocess.run(status, cwd=repo, capture_output=True, text=True, check=True)
        return set(done.stdout.splitlines())

    before = changed()  # what the module's other tests left in the workspace
    assert report(repo).returncode == 0
    assert changed() == before
    result = report(repo, "--readme")
    assert result.returncode == 0, result.stderr
    assert changed() - before == {" M README.md"}
    readme = (repo / "README.md").read_text()
    accuracy = json.loads((repo / "metrics" / "train_fit.json").read_text())["test_accuracy"]
    assert f"| `train_fit` | {accuracy:.4f} |" in readme
    subprocess.run(["git", "checkout", "-q", "README.md"], cwd=repo, check=True)
