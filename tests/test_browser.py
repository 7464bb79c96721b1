"""What a person opens, opened as a person would: `dvc plots show`'s and `dvc plots diff`'s page
and TensorBoard, in headless Chromium with the network off (only loopback answers), after `dvc
repro` of a copy of the repository on small params. Pages are served on loopback, which any
Chromium opens (a snap's opens no file under /tmp). The screenshots stay in
test-artifacts/browser/ (git-ignored)."""

import csv
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from ruamel.yaml import YAML

from conftest import (
    CURVES,
    REPO,
    SMALL,
    assert_colour_is_series_and_dash_is_revision,
    copy_run,
    drawn_lines,
    dvc,
    stage_argv,
)
from trainstyles.pipeline.params import STYLES

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts" / "browser"
# Every host name fails to resolve and every request but loopback goes to a closed port: a page
# that needs the internet renders here as it would on an offline GPU host.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
LEGEND_LABEL = re.compile(r'role-legend-label"[^>]*><text[^>]*>([^<]*)</text>')


# Where Chromium is, in order: Debian's package, Ubuntu's (a stub that runs the snap, and says
# to install the snap where there is none), the snap itself, Google's build.
CANDIDATES = ("chromium", "chromium-browser", "/snap/bin/chromium", "google-chrome-stable")


@dataclass(frozen=True)
class Browser:
    path: str
    # A snap is confined: it opens no file under /tmp or a hidden directory, and writes only
    # below the user's home; pages reach it over loopback, and screenshots through its folder.
    snap: bool


def find_chromium(candidates: tuple[str, ...] = CANDIDATES) -> Browser | None:
    """The first candidate that runs (`--version` answers) and whether it is a snap."""
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is None:
            continue
        try:
            answer = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=60, check=False
            )
        except OSError:
            continue
        if answer.returncode == 0 and re.search(r"\b(Chromium|Chrome) \d", answer.stdout):
            real = Path(path).resolve()  # /snap/bin/chromium links to /usr/bin/snap
            script = real.read_bytes()[:4096] if real.stat().st_size < 1 << 20 else b""
            snap = path.startswith("/snap/") or real.name == "snap" or b"/snap/" in script
            return Browser(path, snap)
    return None


@functools.cache
def browser() -> Browser:
    """The Chromium to test with; where there is none, a skip saying why, except in CI (CI is
    set there), which must run this tier."""
    found = find_chromium()
    if found is None:
        why = "no Chromium runs here: `make test-all` installs Debian's, or `snap install chromium`"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def chromium(*args: str) -> str:
    """Headless Chromium's stdout, once the page's scripts and requests have settled."""
    command = [browser().path, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [*OFFLINE, "--virtual-time-budget=20000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on loopback, for as long as the block lasts: its address."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # a line per request otherwise, on the test's stderr


def screenshot(url: str, name: str, height: int) -> Path:
    """A screenshot of `url` in the artifacts; fails if it is one flat colour."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    with tempfile.TemporaryDirectory(dir=snap_folder() if browser().snap else None) as shots:
        shot = Path(shots) / name
        chromium(f"--window-size=1400,{height}", f"--screenshot={shot}", url)
        shutil.move(shot, path)
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{path} is blank"
    return path


def snap_folder() -> Path:
    """A folder the Chromium snap may write to: its own, below the user's home."""
    folder = Path.home() / "snap" / "chromium" / "common"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fake_browser(directory: Path, name: str, says: str, status: int = 0) -> Path:
    script = directory / name
    script.write_text(f"#!/bin/sh\necho '{says}'\nexit {status}\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("kind", ["debian", "ubuntu-snap", "none"])
def test_chromium_is_found_as_debian_and_ubuntu_install_it(tmp_path, kind):
    """Debian's `chromium`; Ubuntu's `chromium-browser`, a stub that fails where the snap is
    missing, and the snap in /snap/bin; none at all. No browser runs: stand-ins answer."""
    stub = "Command '/snap/bin/chromium' requires the chromium snap to be installed."
    if kind == "debian":
        debian = fake_browser(tmp_path, "chromium", "Chromium 156.0.8078.73 built on Debian")
        fake_browser(tmp_path, "chromium-browser", stub, status=1)
        assert find_chromium((str(debian), str(tmp_path / "chromium-browser"))) == Browser(
            str(debian), snap=False
        )
    elif kind == "ubuntu-snap":
        stub_path = fake_browser(tmp_path, "chromium-browser", stub, status=1)
        snap = fake_browser(tmp_path, "chromium", "Chromium 156.0.8078.73 snap")
        wrapper = tmp_path / "wrapper"
        wrapper.write_text(f'#!/bin/sh\n# runs /snap/bin/chromium\nexec {snap} "$@"\n')
        wrapper.chmod(0o755)
        assert find_chromium((str(stub_path), str(wrapper))) == Browser(str(wrapper), snap=True)
    else:
        stub_path = fake_browser(tmp_path, "chromium-browser", stub, status=1)
        assert find_chromium((str(stub_path), str(tmp_path / "absent"))) is None


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

    with served(repo) as address:
        url = f"{address}dvc_plots/index.html"
        dom = chromium("--dump-dom", url)
        assert 'id="vega-missing"' not in dom
        drawn = charts(dom)
        declared = len(YAML(typ="safe").load(repo / "dvc.yaml")["plots"])
        assert len(drawn) == declared, f"{len(drawn)} of {declared} plots drawn: {sorted(drawn)}"
        for plot in CURVES:
            assert set(STYLES) <= set(drawn[plot]), (plot, drawn[plot])
        assert {"grad_norm", "clip_norm"} <= set(drawn["grad_norm"])
        screenshot(url, "plots.png", height=1000 + 300 * declared)


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
    with served(repo) as address:
        shown = drawn_plots(chromium("--dump-dom", f"{address}dvc_plots/index.html"))
    moved = copy_run(repo, tmp_path / "repo")
    move_curves(moved)
    dvc(moved, "plots", "diff", "HEAD")
    with served(moved) as address:
        diff_page = f"{address}dvc_plots/index.html"
        diffed = drawn_plots(chromium("--dump-dom", diff_page))
        screenshot(diff_page, "plots-diff.png", height=1000 + 300 * len(diffed))
    for page, revisions in ((shown, ["workspace"]), (diffed, ["workspace", "HEAD"])):
        for plot in CURVES:
            lines = drawn_lines(page[plot])
            assert_colour_is_series_and_dash_is_revision(lines, list(STYLES), revisions)
        lines = drawn_lines(page["grad_norm"])
        assert_colour_is_series_and_dash_is_revision(lines, ["grad_norm", "clip_norm"], revisions)


def test_without_vega_the_page_says_how_to_get_it(repo, tmp_path):
    """The page moved away from the checkout's node_modules: a notice, not a blank page."""
    dvc(repo, "plots", "show", "-o", str(tmp_path / "elsewhere"))
    with served(tmp_path / "elsewhere") as address:
        dom = chromium("--dump-dom", f"{address}index.html")
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


# The trainer dies as a kill would stop it, as soon as its resume point and curves of epoch 1
# are on disk.
KILLED_AFTER_EPOCH_1 = """
import contextlib, os, runpy, sys
from trainstyles.pipeline import resume
new_point = resume.Backup.new_point
@contextlib.contextmanager
def killed_after_epoch_1(backup, epochs_done, *args):
    with new_point(backup, epochs_done, *args) as point:
        yield point
    if epochs_done == 1:
        os._exit(137)
resume.Backup.new_point = killed_after_epoch_1
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
POINT_MARK = re.compile(r'<path [^>]*aria-roledescription="point"[^>]*>')


def drawn_points(svg: str, series: str) -> int:
    """How many points of `series` a plot's SVG holds (the template labels each)."""
    return sum(f"series: {series};" in tag for tag in POINT_MARK.findall(svg))


def test_the_plots_page_draws_a_trainer_in_progress_and_its_resume_ends_as_the_finished_run(
    repo, tmp_path
):
    """train_clipped killed after epoch 1 of 2: `dvc plots show` of the workspace draws its one
    epoch beside the other styles' two, and `dvc repro` resumes it to the finished run's bytes."""
    style = "train_clipped"
    epochs = SMALL[style]["epochs"]
    live = copy_run(repo, tmp_path / "repo")
    outs = (f"models/{style}.keras", f"plots/{style}.csv")
    finished = {path: (live / path).read_bytes() for path in outs}
    for path in outs:
        (live / path).unlink()  # as DVC does before it runs the stage
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_EPOCH_1, *stage_argv(style, live)],
        cwd=live, env={**os.environ, "PYTHONPATH": str(live / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert killed.returncode == 137, killed.stderr
    header, first, *_ = finished[f"plots/{style}.csv"].splitlines(keepends=True)
    assert (live / f"plots/{style}.csv").read_bytes() == header + first

    dvc(live, "plots", "show")
    with served(live) as address:
        url = f"{address}dvc_plots/index.html"
        plots = drawn_plots(chromium("--dump-dom", url))
        # The curves' rows of plots: the confusion matrices below them are evaluate's.
        screenshot(url, "plots-in-progress.png", height=760)
    for plot in CURVES:
        drawn = {name: drawn_points(plots[plot], name) for name in STYLES}
        assert drawn == {name: 1 if name == style else epochs for name in STYLES}, plot
    assert drawn_points(plots["grad_norm"], "grad_norm") == 1

    assert "resumed after epoch 1;" in dvc(live, "repro", "--single-item", style)
    assert {path: (live / path).read_bytes() for path in outs} == finished
