"""A run shared through an S3 remote, as a team shares it: pushed from one clone, pulled into a
fresh one that then trains nothing; an object corrupted in the remote refused on pull; a version
of one model fetched by its artifact's name (docs/pipeline.md, "Models as artifacts")."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import (
    add_s3_remote,
    clone_ready_for_make,
    copy_run,
    dvc,
    make,
    s3_client,
)
from trainstyles.pipeline.params import STYLES
from trainstyles.tools.commands import stages_run

pytestmark = pytest.mark.slow
BUCKET = "team-runs"
MODEL = "models/train_raw.keras"


@pytest.fixture(scope="module")
def pushed(small_run, s3_server, tmp_path_factory) -> Path:
    """The session's small run, its remote an S3 bucket, pushed from its own repository."""
    origin = copy_run(small_run, tmp_path_factory.mktemp("remote") / "origin")
    add_s3_remote(origin, s3_server, BUCKET)
    assert "files pushed" in dvc(origin, "push")
    return origin


def out_md5(repo: Path, path: str) -> str:
    lock = YAML(typ="safe").load(repo / "dvc.lock")
    outs = [out for stage in lock["stages"].values() for out in stage.get("outs", [])]
    return next(out["md5"] for out in outs if out["path"] == path)


def test_a_pushed_run_pulls_into_a_fresh_clone_where_make_repro_trains_nothing(pushed, tmp_path):
    clone = clone_ready_for_make(pushed, tmp_path / "clone")
    dvc(clone, "pull")
    repro = make(clone, "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert stages_run(repro.stdout) == set()  # every stage's outputs came from the bucket
    assert "Data and pipelines are up to date." in dvc(clone, "status")
    model = (clone / MODEL).read_bytes()
    assert hashlib.md5(model).hexdigest() == out_md5(clone, MODEL)


def pull(clone: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", "pull"]
    return subprocess.run(command, cwd=clone, capture_output=True, text=True, check=False)


def test_an_object_corrupted_in_the_remote_is_refused_on_pull_and_nothing_is_written(
    pushed, s3_server, tmp_path
):
    """With the remote's `verify` on (docs/comparing.md), a pulled object is hashed before it
    is used. The control: the same pull with `verify` off checks the corrupted bytes out."""
    md5 = out_md5(pushed, MODEL)
    key = f"runs/files/md5/{md5[:2]}/{md5[2:]}"
    s3 = s3_client(s3_server)
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    try:
        clone = clone_ready_for_make(pushed, tmp_path / "verified")
        refused = pull(clone)
        assert refused.returncode == 1
        assert MODEL in refused.stderr
        assert not (clone / MODEL).exists()
        assert not list((clone / ".dvc" / "cache").rglob(md5[2:]))  # not cached either
        assert (clone / "models" / "train_fit.keras").is_file()  # the sound objects came

        trusting = clone_ready_for_make(pushed, tmp_path / "trusting")
        dvc(trusting, "remote", "modify", "--local", "storage", "verify", "false")
        assert pull(trusting).returncode == 0
        assert hashlib.md5((trusting / MODEL).read_bytes()).hexdigest() != md5
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)


def artifact_of(repo: Path, path: str) -> str:
    """The name of the artifact of dvc.yaml in `repo` whose path is `path`."""
    artifacts = YAML(typ="safe").load(repo / "dvc.yaml")["artifacts"]
    [name] = [name for name, artifact in artifacts.items() if artifact["path"] == path]
    return name


# A version of a model is an annotated git tag, GTO's `<artifact>@v<semver>`.
VERSION = "v1.0.0"
VERSIONED, LIGHTWEIGHT, UNTAGGED = (f"models/{style}.keras" for style in STYLES[:3])


@pytest.fixture(scope="module")
def registered(pushed) -> Path:
    """The pushed run with a version of one model, and a lightweight tag of another's name,
    which DVC does not count as a version."""
    for path, options in [(VERSIONED, ["-a", "-m", "the small run's model"]), (LIGHTWEIGHT, [])]:
        name = f"{artifact_of(pushed, path)}@{VERSION}"
        subprocess.run(["git", "tag", *options, name], cwd=pushed, check=True)
    return pushed


def artifacts_get(where: Path, *args: str) -> subprocess.CompletedProcess:
    """`dvc artifacts get args`, run in `where`. DVC asks Studio first where a token is set:
    never from a test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_STUDIO")}
    return subprocess.run(
        [sys.executable, "-m", "dvc", "artifacts", "get", *args],
        cwd=where, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def fresh_clone(origin: Path, destination: Path) -> str:
    subprocess.run(["git", "clone", "-q", str(origin), str(destination)], check=True)
    return str(destination)


@pytest.mark.parametrize(
    "repository",
    [
        pytest.param(fresh_clone, id="a fresh clone"),
        # A git URL, as a reader names a hosted repository: DVC clones it itself.
        pytest.param(lambda origin, _: f"file://{origin}", id="the repository's URL"),
    ],
)
def test_a_models_version_is_fetched_from_the_remote_by_its_artifacts_name(
    registered, repository, tmp_path
):
    url = repository(registered, tmp_path / "clone")
    (tmp_path / "out").mkdir()
    name, md5 = artifact_of(registered, VERSIONED), out_md5(registered, VERSIONED)
    # Where the bytes come from: the bucket, not the cache of the repository that pushed them.
    shown = artifacts_get(tmp_path / "out", url, name, "--show-url")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"s3://{BUCKET}/runs/files/md5/{md5[:2]}/{md5[2:]}"

    fetched = artifacts_get(tmp_path / "out", url, name)
    assert fetched.returncode == 0, fetched.stderr
    [model] = (tmp_path / "out").iterdir()
    assert model.name == Path(VERSIONED).name
    assert hashlib.md5(model.read_bytes()).hexdigest() == md5


def test_an_unknown_name_and_a_model_with_no_version_are_refused_by_name(registered, tmp_path):
    """The control: the same run and remote, only the name or the tag differs."""
    unversioned = [artifact_of(registered, path) for path in (LIGHTWEIGHT, UNTAGGED)]
    for name in ["train-nonexistent-model", *unversioned]:
        refused = artifacts_get(tmp_path, f"file://{registered}", name)
        assert refused.returncode != 0
        assert f"Unable to find artifact '{name}'" in refused.stderr
    assert list(tmp_path.iterdir()) == []
