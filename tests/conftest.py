"""Fixtures: tiny synthetic Fashion-MNIST-shaped data and params shrunk to match."""

import functools
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from ruamel.yaml import YAML

from trainstyles.pipeline import data
from trainstyles.pipeline.data import Split
from trainstyles.pipeline.determinism import deterministic_kernels
from trainstyles.pipeline.params import STYLES, Params, load_params
from trainstyles.pipeline.styles import trains_through_fit
from trainstyles.tools.commands import (
    copy_worktree,
    stages_run,  # noqa: F401 - the tests take it from here
)

REPO = Path(__file__).resolve().parents[1]
# The tests train in this process, and TensorFlow fixes its thread pools when it first runs an
# op, whichever test that is: set them as the stages do, before any.
deterministic_kernels(load_params(REPO / "params.yaml").train.intra_op_threads)


# The styles that train through fit() and its callback zoo (fit.fit_with_zoo).
FIT_STYLES = [style for style in STYLES if trains_through_fit(style)]


# The modules that take longest, longest first; the others follow in their usual order.
LONGEST_FIRST = (
    "test_sweep_shards",  # a seed sweep on two hosts, merged, and again on one
    "test_signal_noise",  # a seed sweep
    "test_resume",  # trainers started, killed and resumed
    "test_adding_a_style",  # a style added, and the pipeline run again
    "test_docs",  # every recipe of the pages, the seed sweep's too
    "test_report",
    "test_workflows",  # the workflows' jobs, a fork's training both runs
    "test_pipeline",
    "test_distribute",
    "test_remote",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test-all`: `--dist loadfile`, each module's tests on one worker,
    which builds its fixtures once), the longest modules are handed out first, so that the
    short ones fill in at the end instead of one long module running alone."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def stage_argv(stage: str, repo: Path = REPO) -> list[str]:
    """The script (its full path) and arguments that DVC runs for `stage`, from dvc.yaml."""
    command = YAML(typ="safe").load(repo / "dvc.yaml")["stages"][stage]["cmd"]
    script, *args = command.split(" python ", 1)[1].split()
    return [str(repo / script), *args]


def learnable_split(count: int, seed: int) -> Split:
    """Images whose class shows as a bright row band, under noise: an MLP learns it in an epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[2 * label : 2 * label + 3] = 250
    return Split(images, labels)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fake_fashion_dir(tmp_path, monkeypatch) -> Path:
    """A directory with the four archive names holding a tiny data set, and the pins moved to it."""
    train, test = learnable_split(300, seed=1), learnable_split(60, seed=2)
    contents = {
        "train-images-idx3-ubyte.gz": idx_bytes(train.images),
        "train-labels-idx1-ubyte.gz": idx_bytes(train.labels),
        "t10k-images-idx3-ubyte.gz": idx_bytes(test.images),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(test.labels),
    }
    directory = tmp_path / "fashion"
    directory.mkdir()
    for name, content in contents.items():
        (directory / name).write_bytes(gzip.compress(content, mtime=0))
        monkeypatch.setitem(data.IDX_SHA256, name, hashlib.sha256(content).hexdigest())
    return directory


def tiny_params(**sections) -> Params:
    """params.yaml with few epochs and small batches; `sections` replace keys section by section."""
    raw = YAML(typ="safe").load(REPO / "params.yaml")
    raw["train"]["batch_size"] = 32
    for style in STYLES:
        raw[style]["epochs"] = 2
    for section, values in sections.items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    return Params.model_validate(raw)


COMMITTED_RESULTS = ("dvc.lock", "metrics/", "plots/", "sweep/")


def committed_results(destination: Path, repo: Path = REPO) -> Path:
    """The committed run and sweep records (COMMITTED_RESULTS) as HEAD holds them, written into
    `destination`: what a test of the committed run reads, whichever kind of machine trained
    the workspace since (`make repro` on a user's machine changes the workspace, not HEAD)."""
    paths = [name.rstrip("/") for name in COMMITTED_RESULTS]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD", "--", *paths],
        cwd=repo, capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        problem = archive.stderr.decode(errors="replace").strip()
        pytest.fail(f"the committed run is read from HEAD, and {repo} has none: {problem}")
    destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    return destination


_KEPT: list[tempfile.TemporaryDirectory] = []  # removed when the test process ends


@functools.cache
def committed() -> Path:
    """A directory holding HEAD's committed run and sweep records, made once per process."""
    _KEPT.append(tempfile.TemporaryDirectory(prefix="committed-"))
    return committed_results(Path(_KEPT[-1].name))


def committed_checkout(destination: Path) -> Path:
    """This checkout's files as they are, its committed run and records as HEAD holds them,
    committed: a copy that is what a user's clone is after their own changes."""
    copy_worktree(REPO, destination, leave_out=COMMITTED_RESULTS)
    committed_results(destination)
    identify(destination)
    commit(destination, "the checkout, with the committed run as HEAD holds it")
    return destination


# A kind of machine that no sweep record has, as /proc/cpuinfo would describe it.
UNKNOWN_CPU = {"model_name": "Imaginary CPU", "vendor": "Imaginary", "family_model": "99/1"}
UNKNOWN_KIND = "Imaginary 99/1"


def unknown_kind_cpuinfo(path: Path) -> Path:
    """A cpuinfo file of UNKNOWN_CPU, with this machine's own instruction sets."""
    from trainstyles.pipeline.machine import cpu  # noqa: PLC0415

    family, model = UNKNOWN_CPU["family_model"].split("/")
    path.write_text(
        f"vendor_id\t: {UNKNOWN_CPU['vendor']}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {UNKNOWN_CPU['model_name']}\nflags\t\t: {' '.join(cpu()['features'])}\n\n"
    )
    return path


def relabel_workspace_run(repo: Path) -> None:
    """The workspace's run in `repo` as if trained on UNKNOWN_CPU: each style's machine record
    says so (uncommitted), as after `make repro` on a kind no record has."""
    for path in sorted((repo / "metrics" / "machine").glob("*.json")):
        machine = json.loads(path.read_text())
        machine["cpu"] |= UNKNOWN_CPU
        path.write_text(json.dumps(machine, indent=2) + "\n")


# params for end-to-end runs in seconds: 600 training images, 2 epochs per style.
SMALL = {
    "split": {"val_size": 100, "train_limit": 600, "test_limit": 200},
    "train": {"batch_size": 64},
    **{style: {"epochs": 2} for style in STYLES},
}


def copy_repo(destination: Path, params: dict | None = None) -> Path:
    """A fresh git repository holding this checkout's files (not its committed results),
    with `params` merged into params.yaml section by section."""
    copy_worktree(REPO, destination, leave_out=COMMITTED_RESULTS)
    edit_params(destination / "params.yaml", params or {})
    identify(destination)
    subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
    return destination


def identify(repo: Path) -> None:
    """Commits, and `dvc exp run`, need an identity: the repository's own, whatever the
    machine's."""
    for key, value in {"user.name": "trainstyles test", "user.email": "test@ts.invalid"}.items():
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)


@pytest.fixture(scope="session")
def small_run(request, tmp_path_factory) -> Path:
    """The session's one small run: a copy of this checkout on SMALL params after a full `dvc
    repro`, committed. Built from the checkout as it is now (a mutant's edit is in it), once per
    test run: pytest-xdist's workers share it through a lock. Tests take copies (`copy_run`)."""
    # A pytest-xdist worker has a base directory of its own; their parent is the test run's.
    worker = getattr(request.config, "workerinput", None)
    if worker:
        root = tmp_path_factory.getbasetemp().parent / f"small-run-{worker['testrunuid']}"
    else:
        root = tmp_path_factory.getbasetemp() / "small-run"
    root.mkdir(exist_ok=True)
    run = root / "repo"
    with FileLock(root / "lock"):
        if not (root / "built").exists():
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            copy_repo(run, SMALL)
            dvc(run, "repro")
            commit(run, "a small run")
            (root / "built").touch()
    return run


def copy_run(run: Path, destination: Path) -> Path:
    """A copy of `run` (the repository with its git history and DVC cache) to change freely."""
    shutil.copytree(run, destination, symlinks=True)
    return destination


def commit(repo: Path, message: str) -> None:
    for command in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", *command], cwd=repo, check=True)


def edit_params(path: Path, changes: dict) -> None:
    yaml = YAML()  # round-trip: keeps the file's comments and layout
    params = yaml.load(path)
    for section, values in changes.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    yaml.dump(params, path)


def dvc(repo: Path, *args: str) -> str:
    """Run dvc in `repo` with the repo's own code and this environment's python; must succeed.

    dvc is the one beside this python (a venv), else the one on PATH (a system-wide install, as
    in the container, puts scripts in /usr/local/bin whichever python links there)."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PYTHONPATH": str(repo / "src"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [shutil.which("dvc", path=env["PATH"]) or "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_module(repo: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` in `repo` with the repo's own code, as make runs it."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)


CURVES = ("val_accuracy", "val_loss", "learning_rate")  # dvc.yaml's plots of every style
# The template of dvc.yaml's overlaid curves, which gives each series (a style, or a field of
# grad_norm's one file) its colour in its own table.
CURVES_TEMPLATE = REPO / ".dvc" / "plots" / "styles.json"
# A line Vega drew, in its SVG (vl-convert's or a browser's). The template labels each line with
# its series and revision, "series: train_fit; revision: HEAD", whatever its stroke.
LINE_MARK = re.compile(r'<path [^>]*aria-roledescription="line mark"[^>]*>')


def template_colours() -> dict[str, str]:
    """Each series the curves template names, and its colour."""
    [lookup] = [step for step in json.loads(CURVES_TEMPLATE.read_text())["transform"]
                if "lookup" in step]  # fmt: skip
    return {row["series"]: row["colour"] for row in lookup["from"]["data"]["values"]}


def drawn_lines(svg: str) -> dict[tuple[str | None, str | None], tuple[str, str]]:
    """Each line of a plot's SVG by the series and revision it is labelled with: its stroke
    colour and its dash array."""
    lines = {}
    for tag in LINE_MARK.findall(svg):
        attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        label = dict(part.split(": ", 1) for part in attributes["aria-label"].split("; "))
        key = (label.get("series"), label.get("revision"))
        lines[key] = (attributes["stroke"], attributes.get("stroke-dasharray", ""))
    return lines


def assert_colour_is_series_and_dash_is_revision(
    lines: dict, series: list[str], revisions: list[str]
) -> None:
    """Each series in the template's colour, its own, in every revision; each revision in a dash
    of its own, the same for every series; and a line for each series and revision."""
    colours = template_colours()
    missing = sorted(set(series) - set(colours))
    assert not missing, f"{CURVES_TEMPLATE.name} has no colour for {missing}"
    assert len({colours[name] for name in series}) == len(series), colours
    drawn = {key: colour for key, (colour, _) in lines.items()}
    assert drawn == {(name, revision): colours.get(name) for name, revision in drawn}
    dashes = {revision: {dash for (_, rev), (_, dash) in lines.items() if rev == revision}
              for revision in revisions}  # fmt: skip
    assert all(len(dash) == 1 for dash in dashes.values()), dashes
    assert len(set().union(*dashes.values())) == len(revisions), dashes
    assert sorted(lines, key=str) == sorted(
        ((name, revision) for name in series for revision in revisions), key=str
    )


def table_rows(page: str, first_cell: str) -> list[list[str]]:
    """The cells of every Markdown table row whose first cell is `first_cell`."""
    rows = [line.strip("|").split("|") for line in page.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows if row[0].strip() == first_cell]


# An S3 server on 127.0.0.1 for the remote's tests: moto's, as DVC's own test suite uses. It
# takes any credentials; the tests' processes get these, as a CI job gets its secrets.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trainstyles-test",
    "AWS_SECRET_ACCESS_KEY": "trainstyles-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Without credentials botocore would ask the EC2 metadata address: never from a test.
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of an S3 server on 127.0.0.1, for this test process's session."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {key: os.environ.get(key) for key in S3_CREDENTIALS}
    os.environ.update(S3_CREDENTIALS)
    yield f"http://{host}:{port}"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def s3_client(endpoint: str):
    import boto3  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def add_s3_remote(repo: Path, endpoint: str, bucket: str) -> None:
    """A new bucket as the repository's default remote, set up as docs/comparing.md says
    (`verify`: each object pulled is checked against its hash), and committed."""
    s3_client(endpoint).create_bucket(Bucket=bucket)
    dvc(repo, "remote", "add", "--default", "storage", f"s3://{bucket}/runs")
    dvc(repo, "remote", "modify", "storage", "endpointurl", endpoint)
    dvc(repo, "remote", "modify", "storage", "verify", "true")
    commit(repo, "the team's S3 remote")


def clone_ready_for_make(origin: Path, destination: Path, branch: str | None = None) -> Path:
    """A fresh git clone of `origin`, as `make setup` would leave it without installing again:
    this environment's venv and the checkout's Vega beside it, older than what they install."""
    branch_args = ["-b", branch] if branch else []
    subprocess.run(["git", "clone", "-q", *branch_args, str(origin), str(destination)], check=True)
    return ready_for_make(destination)


def ready_for_make(repo: Path) -> Path:
    """`repo` as `make setup` would leave it, without installing again: this environment's venv
    and the checkout's Vega beside it, older than what they install."""
    (repo / ".venv").symlink_to(sys.prefix)
    if (REPO / "node_modules").is_dir():
        (repo / "node_modules").symlink_to(REPO / "node_modules")
    installed = ("requirements.txt", "requirements-cuda.txt", "pyproject.toml", "package.json")
    for name in (*installed, "package-lock.json"):
        os.utime(repo / name, (0, 0))
    return repo


def make(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`make args` in `repo`, with the repo's own code."""
    return subprocess.run(
        ["make", *args], cwd=repo, env=own_code(repo, env), capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def in_its_shell(repo: Path, env: dict | None = None) -> dict:
    """own_code, with this environment's tools first on PATH, as a reader's shell has them
    after `. .venv/bin/activate`."""
    tools = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return own_code(repo, {"PATH": tools, **(env or {})})


def own_code(repo: Path, env: dict | None = None) -> dict:
    """An environment in which commands run in `repo` import the repo's own code, and a pytest
    or a make started there is a run of its own, not a part of this one (a make under `make
    test-all` would say which directories it enters and leaves)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "MAKE")) and key != "MFLAGS"
    }
    return {**inherited, "PYTHONPATH": str(repo / "src"), **(env or {})}
