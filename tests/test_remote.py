"""A run shared through an S3 remote, as a team shares it: pushed from one clone, pulled into a
fresh one that then trains nothing; an object corrupted in the remote refused on pull."""

import hashlib
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
