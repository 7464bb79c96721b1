"""The GitHub workflows' own steps, run end to end here, read from their YAML: main's push of its
run to an S3 remote (on 127.0.0.1), then a pull request's job, from the same repository and from
a fork, in fresh clones. Only CML's comment is a stand-in, which records what it would post."""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import (
    REPO,
    S3_CREDENTIALS,
    add_s3_remote,
    clone_ready_for_make,
    commit,
    copy_run,
    dvc,
    edit_params,
)
from trainstyles.tools.commands import stages_run

pytestmark = pytest.mark.slow
WORKFLOWS = REPO / ".github" / "workflows"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CML = """#!/bin/sh
# CML's stand-in: records the command and the page it would post.
echo "$@" > "$CML_CALLS/args"
cp "$3" "$CML_CALLS/posted.md"
"""


def value(expression: str, context: dict) -> str:
    """A literal or a dotted name of the context; what the workflows use, nothing more."""
    if expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1]
    found = context
    for part in expression.split("."):
        assert isinstance(found, dict) and part in found, f"unknown expression {expression!r}"
        found = found[part]
    return found


def condition(expression: str, context: dict) -> bool:
    left, equals, right = expression.partition(" == ")
    assert equals, f"unsupported condition {expression!r}"
    return value(left.strip(), context) == value(right.strip(), context)


def run_job(workflow: str, repo: Path, context: dict, runner: dict) -> list[dict]:
    """Each step of the workflow's one job that has `run:`, in order, in `repo`, as a runner
    runs it: `bash -e` in the `runner`'s environment, its `env` and `if` evaluated over
    `context`, its outputs gathered from $GITHUB_OUTPUT into `steps.<id>.outputs`. Steps that
    use an action are the runner's setup (checkout, Python, CML's install) or an upload, and
    are left out."""
    (job,) = YAML(typ="safe").load(WORKFLOWS / workflow)["jobs"].values()
    context = {**context, "steps": {}}
    results = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        if "if" in step and not condition(step["if"], context):
            results.append({"name": step["name"], "skipped": True})
            continue
        output = Path(tempfile.mkstemp(dir=repo.parent)[1])
        env = {
            **runner,
            **{key: EXPRESSION.sub(lambda m: value(m[1], context), str(text))
               for key, text in step.get("env", {}).items()},
            "GITHUB_OUTPUT": str(output),
            "PYTHONPATH": str(repo / "src"),
        }  # fmt: skip
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=repo, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{step['name']}:\n{done.stdout}\n{done.stderr}"
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
        if "id" in step:
            context["steps"][step["id"]] = {"outputs": outputs}
        results.append({"name": step["name"], "stdout": done.stdout, "stderr": done.stderr})
    return results


def ran(results: list[dict], name_start: str) -> set[str]:
    (step,) = [step for step in results if step["name"].startswith(name_start)]
    return stages_run(step["stdout"])


@pytest.fixture(scope="module")
def team(small_run, s3_server, tmp_path_factory) -> dict:
    """A team's repository: main holds the small run and an S3 remote it was pushed to; a
    branch changes a param and commits its run, as a pull request does, but pushes nothing."""
    root = tmp_path_factory.mktemp("workflows")
    origin = copy_run(small_run, root / "origin")
    subprocess.run(["git", "branch", "-M", "main"], cwd=origin, check=True)
    add_s3_remote(origin, s3_server, "team-workflows")
    dvc(origin, "push")  # the team member who trained the commit pushed it
    subprocess.run(["git", "checkout", "-q", "-b", "clip-half"], cwd=origin, check=True)
    edit_params(origin / "params.yaml", {"train_clipped": {"clip_norm": 0.5}})
    dvc(origin, "repro")
    commit(origin, "clip at 0.5")
    subprocess.run(["git", "checkout", "-q", "main"], cwd=origin, check=True)
    stubs = root / "bin"
    stubs.mkdir()
    (stubs / "cml").write_text(CML)
    (stubs / "cml").chmod(0o755)
    secrets = {
        "AWS_ACCESS_KEY_ID": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "GITHUB_TOKEN": "a-token",
    }
    # The runner's own environment: CML's stand-in first on PATH, and no credentials but the
    # secrets a job passes to its steps.
    runner = {key: value for key, value in os.environ.items() if key not in secrets}
    runner["PATH"] = f"{stubs}:{os.environ['PATH']}"
    return {"origin": origin, "root": root, "runner": runner, "secrets": secrets}


def pull_request(team: dict, name: str, head_repository: str, secrets: dict) -> dict:
    """compare.yml's job on the pull request of branch clip-half into main, in a fresh clone."""
    clone = clone_ready_for_make(team["origin"], team["root"] / name, branch="clip-half")
    calls = team["root"] / f"{name}-cml"
    calls.mkdir()
    context = {
        "github": {
            "base_ref": "main",
            "repository": "team/trainstyles",
            "event": {"pull_request": {"head": {"repo": {"full_name": head_repository}}}},
        },
        "secrets": secrets,
    }
    steps = run_job("compare.yml", clone, context, team["runner"] | {"CML_CALLS": str(calls)})
    return {"clone": clone, "steps": steps, "calls": calls}


def test_mains_push_job_pulls_the_pushed_run_and_trains_nothing(team):
    clone = clone_ready_for_make(team["origin"], team["root"] / "main-push", branch="main")
    steps = run_job("push.yml", clone, {"secrets": team["secrets"]}, team["runner"])
    assert [step.get("skipped", False) for step in steps] == [False] * len(steps)
    assert ran(steps, "Reproduce") == set()
    assert (
        "Everything is up to date."
        in next(s for s in steps if s["name"] == "Push the run")["stdout"]
    )


def test_a_pull_request_pulls_mains_run_trains_only_what_it_changed_and_comments(team):
    job = pull_request(team, "same-repo", "team/trainstyles", team["secrets"])
    # The one model the branch changed and pushed nowhere; evaluate's outputs are in git.
    assert ran(job["steps"], "Reproduce") == {"train_clipped"}
    posted = (job["calls"] / "posted.md").read_text()
    assert (job["calls"] / "args").read_text().split() == [
        "comment", "update", "report/report.md"
    ]  # fmt: skip
    assert posted == (job["clone"] / "report" / "report.md").read_text()
    assert "## Against `origin/main`, both reproduced on this machine" in posted
    assert "The base's stages run here: none (its run came from the DVC cache or remote)" in posted
    assert "| `params.yaml` | `train_clipped.clip_norm` | 1.0000 | 0.5000 | -0.5000 |" in posted


def test_a_pull_request_from_a_fork_trains_what_it_cannot_pull_and_posts_no_comment(team):
    """A fork's job gets no secrets: the remote cannot be read, so both runs are trained here,
    and its read-only token cannot comment: the report stays an artifact, the job green."""
    no_secrets = {key: "" for key in team["secrets"]}
    job = pull_request(team, "fork", "someone/trainstyles", no_secrets)
    pulled = next(step for step in job["steps"] if step["name"].startswith("Pull"))
    assert "::warning::the DVC remote could not be read" in pulled["stdout"]
    assert {"prepare", "train_fit"} <= ran(job["steps"], "Reproduce")  # the remote held them
    assert job["steps"][-1] == {
        "name": "Post it on the pull request (CML uploads the PNGs it links)", "skipped": True
    }  # fmt: skip
    assert not (job["calls"] / "args").exists()
    assert (job["clone"] / "report" / "report.md").is_file()  # what the artifact step uploads
