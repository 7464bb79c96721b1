"""What a person opens, opened as a person would: `dvc plots show`'s and `dvc plots diff`'s page
and TensorBoard, in headless Chromium with the network off (only loopback answers), after `dvc
repro` of a copy of the repository on small params. The screenshots stay in
test-artifacts/browser/ (git-ignored)."""

import csv
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from ruamel.yaml import YAML

from conftest import (
    CURVES,
    REPO,
    assert_colour_is_series_and_dash_is_revision,
    copy_run,
    drawn_lines,
    dvc,
)
from trainstyles.params import STYLES

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts" / "browser"
# Every host name fails to resolve and every request but loopback goes to a closed port: a page
# that needs the internet renders here as it would on an offline GPU host.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
LEGEND_LABEL = re.compile(r'role-legend-label"[^>]*><text[^>]*>([^<]*)</text>')


def chromium(*args: str) -> str:
    """Headless Chromium's stdout, once the page's scripts and requests have settled."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium not found: `make test` installs it (apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [*OFFLINE, "--virtual-time-budget=20000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def screenshot(url: str, name: str, height: int) -> Path:
    """A screenshot of `url` in the artifacts; fails if it is one flat colour."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    chromium(f"--window-size=1400,{height}", f"--screenshot={path}", url)
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{path} is blank"
    return path


@pytest.fixture(scope="module")
def repo(small_run, tmp_path_factory) -> Path:
    """A copy of the session's small run, with the Vega copies `make setup` installs."""
    vega = REPO / "node_modules"
    if not (vega / "vega-embed").is_dir():
        pytest.fail(f"{vega} has no Vega: run `make setup` (npm ci) first")
    copy = copy_run(small_run, tmp_path_factory.mktemp("browser") / "repo")
    (copy / "node_modules").symlink_to(vega)
    return copy


def drawn_plots(dom: str) -> dict[str, str]:
    """The part of the page of each plot Vega drew an SVG for, by the plot's div id."""
    return {
        re.match(r'<div id="([^"]*)"', part)[1]: part
        for part in re.split(r'(?=<div id=")', dom)[1:]
        if 'class="marks"' in part
    }


def charts(dom: str) -> dict[str, list[str]]:
    """Each plot's div id and its legends' labels, for the plots Vega drew an SVG for."""
    return {plot: LEGEND_LABEL.findall(part) for plot, part in drawn_plots(dom).items()}


def test_the_plots_page_renders_every_plot_offline(repo):
    dvc(repo, "plots", "show")  # no flags: the template is the repository's default
    page = repo / "dvc_plots" / "index.html"
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]*)"', page.read_text())
    assert scripts and not [src for src in scripts if re.match(r"(https?:)?//", src)], scripts

    dom = chromium("--dump-dom", page.as_uri())
    assert 'id="vega-missing"' not in dom
    drawn = charts(dom)
    declared = len(YAML(typ="safe").load(repo / "dvc.yaml")["plots"])
    assert len(drawn) == declared, f"{len(drawn)} of {declared} plots drawn: {sorted(drawn)}"
    for plot in CURVES:
        assert set(STYLES) <= set(drawn[plot]), (plot, drawn[plot])
    assert {"grad_norm", "clip_norm"} <= set(drawn["grad_norm"])
    screenshot(page.as_uri(), "plots.png", height=1000 + 300 * declared)


def move_curves(repo: Path) -> None:
    """Every value of every style's curves a tenth lower in the workspace than committed."""
    for path in (repo / "plots").glob("*.csv"):
        with path.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(
                {key: value if key == "epoch" else float(value) * 0.9 for key, value in row.items()}
                for row in rows
            )


def test_each_style_is_a_colour_and_each_revision_a_dash_in_show_and_diff(repo, tmp_path):
    """The strokes Vega drew in the browser: `dvc plots show` of the run, then `dvc plots diff
    HEAD` once the workspace's curves have moved."""
    dvc(repo, "plots", "show")
    shown = drawn_plots(chromium("--dump-dom", (repo / "dvc_plots" / "index.html").as_uri()))
    moved = copy_run(repo, tmp_path / "repo")
    move_curves(moved)
    dvc(moved, "plots", "diff", "HEAD")
    diff_page = (moved / "dvc_plots" / "index.html").as_uri()
    diffed = drawn_plots(chromium("--dump-dom", diff_page))
    for page, revisions in ((shown, ["workspace"]), (diffed, ["workspace", "HEAD"])):
        for plot in CURVES:
            lines = drawn_lines(page[plot])
            assert_colour_is_series_and_dash_is_revision(lines, list(STYLES), revisions)
        lines = drawn_lines(page["grad_norm"])
        assert_colour_is_series_and_dash_is_revision(lines, ["grad_norm", "clip_norm"], revisions)
    screenshot(diff_page, "plots-diff.png", height=1000 + 300 * len(diffed))


def test_without_vega_the_page_says_how_to_get_it(repo, tmp_path):
    """The page moved away from the checkout's node_modules: a notice, not a blank page."""
    dvc(repo, "plots", "show", "-o", str(tmp_path / "elsewhere"))
    dom = chromium("--dump-dom", (tmp_path / "elsewhere" / "index.html").as_uri())
    assert not charts(dom)
    assert 'id="vega-missing"' in dom and "make setup" in dom


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tensorboard(repo) -> Iterator[str]:
    """`tensorboard --logdir logs` serving the copy's run on loopback; yields its address."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [Path(sys.executable).with_name("tensorboard"), "--logdir", "logs"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tensorboard did not answer at {url}: {server.stderr.read()}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_lists_every_run_and_its_scalars_offline(tensorboard):
    dom = chromium("--dump-dom", tensorboard)
    runs = set(re.findall(r"\b(train_\w+/(?:train|validation))\b", dom))
    assert runs == {f"{style}/{split}" for style in STYLES for split in ("train", "validation")}
    scalars = set(re.findall(r"\bepoch_\w+", dom))
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_grad_norm"} <= scalars
    # The Scalars dashboard: its charts are SVG, which headless Chromium draws without a GPU.
    screenshot(f"{tensorboard}#scalars", "tensorboard.png", height=1400)
