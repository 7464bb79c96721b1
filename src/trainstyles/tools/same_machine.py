"""A/B on one machine: a base revision reproduced here, beside a workspace reproduced here.

A committed run may come from another kind of machine, whose kernels round differently, so a
diff against it mixes the change with the machine. Reproducing the base in a git worktree that
shares this checkout's DVC cache re-runs only what is stale there, plus every trainer that was
recorded on another machine than this one: both sides of the diff then come from this machine.
"""

import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ruamel.yaml import YAML

from trainstyles import StageError, StageWarning
from trainstyles.pipeline.machine import fingerprint
from trainstyles.tools.commands import dvc, git, stages_run
from trainstyles.tools.machines import kind_differences, run_machines


def reproduce_here(root: Path) -> list[str]:
    """`dvc repro` in `root`, then a forced re-run of each trainer that did not run just now and
    whose recorded machine is not this one (or is not recorded); returns every stage it ran."""
    ran = stages_run(dvc("repro", cwd=root))
    threads = YAML(typ="safe").load(root / "params.yaml")["train"].get("intra_op_threads", 0)
    here = fingerprint(threads)
    elsewhere = [
        style
        for style, machine in run_machines(None, root).items()
        if (machine is None or kind_differences(machine, here)) and style not in ran
    ]
    if elsewhere:
        dvc("repro", "--force", "--single-item", *elsewhere, cwd=root)
        ran |= stages_run(dvc("repro", cwd=root)) | set(elsewhere)
    return sorted(ran)


def fill_from_remote(root: Path) -> None:
    """Fetch the run committed in `root` from its DVC remote into the cache, where a remote is
    configured: a PR job then pulls the base's run, pushed from main, rather than training it. A
    remote that cannot be read (a fork's job has no secrets) is said, and the run reproduced."""
    if not dvc("remote", "list", cwd=root).strip():
        return
    try:
        dvc("fetch", cwd=root)
    except StageError as error:
        message = f"the DVC remote lacks part of the base's run, which is trained here: {error}"
        warnings.warn(message, StageWarning, stacklevel=2)


@contextmanager
def base_worktree(revision: str) -> Iterator[tuple[Path, list[str]]]:
    """A worktree of `revision`, reproduced on this machine with this checkout's DVC cache, and
    the stages that had to run for it (none where the cache or the remote held its run)."""
    cache = dvc("cache", "dir").strip()
    path = Path(tempfile.mkdtemp(prefix="trainstyles-base-")) / "base"
    git("worktree", "add", "--detach", str(path), revision)
    try:
        dvc("cache", "dir", "--local", cache, cwd=path)
        # What the cache holds needs no training: a new worktree has no outputs of its own.
        fill_from_remote(path)
        dvc("checkout", "--allow-missing", cwd=path)
        yield path, reproduce_here(path)
    finally:
        git("worktree", "remove", "--force", str(path))
        shutil.rmtree(path.parent, ignore_errors=True)


def metric_values(root: Path) -> dict[str, dict]:
    """Every metric of the workspace in `root`, file by file, as `dvc metrics show` reads them."""
    shown = json.loads(dvc("metrics", "show", "--json", cwd=root) or "{}")
    files = next(iter(shown.values()), {}).get("data", {})
    return {path: content.get("data", {}) for path, content in files.items()}


def values_diff(old: dict[str, dict], new: dict[str, dict]) -> dict[str, dict]:
    """What changed between two sets of metrics, in the shape of `dvc metrics diff --json`."""
    diff = {}
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, {}), new.get(path, {})
        changes = {
            key: {
                "old": before.get(key),
                "new": after.get(key),
                "diff": after[key] - before[key]
                if isinstance(before.get(key), int | float)
                and isinstance(after.get(key), int | float)
                else None,
            }
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        }
        if changes:
            diff[path] = changes
    return diff
