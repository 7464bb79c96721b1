"""Break each stated guarantee on purpose, one at a time, and check that a test fails.

`make mutants` (minutes; not part of `make test`): each mutant is one edit of the code behind a
guarantee of docs/testing.md, made in a temporary copy of this checkout; the tests that hold the
guarantee run there and must fail. A mutant they survive is a guarantee no test holds. Exits 1
if any survives. `python tests/mutants.py WORDS` runs the mutants whose guarantee names WORDS.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import committed_checkout


@dataclass(frozen=True)
class Mutant:
    guarantee: str
    path: str
    old: str  # must occur exactly once in `path`
    new: str
    tests: tuple[str, ...]  # pytest arguments


MUTANTS = [
    Mutant(
        "a resume point made with other params, data or code is discarded",
        "src/trainstyles/pipeline/resume.py",
        "    return digest.hexdigest()\n\n\ndef latest_point",
        '    return "constant"\n\n\ndef latest_point',
        ("tests/test_resume.py",),
    ),
    Mutant(
        "a resume point survives every edit that cannot change the run: hashes the whole package",
        "src/trainstyles/pipeline/resume.py",
        '    for dep in stages[stage]["deps"]:\n',
        "    for dep in sorted(str(p.relative_to(checkout))\n"
        '                      for p in checkout.rglob("src/**/*.py")):\n',
        ("tests/test_resume.py", "-k", "survives"),
    ),
    Mutant(
        "the pipeline never imports a tool: imports a tool module from the pipeline",
        "src/trainstyles/pipeline/training.py",
        "from trainstyles import StageError, StageWarning\n",
        "from trainstyles import StageError, StageWarning\n"
        "from trainstyles.tools import noise  # noqa: F401\n",
        ("tests/test_wall.py",),
    ),
    Mutant(
        "a killed stage resumes from its last resume point",
        "src/trainstyles/pipeline/resume.py",
        "        self.point = latest_point(directory)",
        "        self.point = None",
        ("tests/test_resume.py", "-k", "killed_mid_epoch"),
    ),
    Mutant(
        "every epoch leaves a resume point",
        "src/trainstyles/pipeline/resume.py",
        "            os.replace(staging, point)",
        "            point = staging",
        ("tests/test_resume.py",),
    ),
    Mutant(
        "a resumed run gets back the callbacks' counters",
        "src/trainstyles/pipeline/resume.py",
        "        self.stateful = [callback for callback in zoo if type(callback) in self.STATE]",
        "        self.stateful = []",
        ("tests/test_resume.py", "-k", "uninterrupted_run"),
    ),
    Mutant(
        "each epoch's curves are published whole: written in place",
        "src/trainstyles/pipeline/outputs.py",
        '    with atomic_path(path) as temp, temp.open("w", newline="") as stream:\n',
        "    path.parent.mkdir(parents=True, exist_ok=True)\n"
        '    with path.open("w", newline="") as stream:\n',
        ("tests/test_resume.py", "-k", "ends_as_an_uninterrupted_run"),
    ),
    Mutant(
        "a resumed run's curves hold every epoch: written from the resume point on",
        "src/trainstyles/pipeline/resume.py",
        '            write_csv(epoch_rows(state["history"]), self.curves)\n',
        '            self.__dict__.setdefault("resumed_after", epochs_done - 1)\n'
        "            since = {key: values[self.resumed_after :]\n"
        '                     for key, values in state["history"].items()}\n'
        "            write_csv(epoch_rows(since), self.curves)\n",
        ("tests/test_resume.py", "-k", "ends_as_an_uninterrupted_run"),
    ),
    Mutant(
        "under multi_worker no worker resumes",
        "src/trainstyles/pipeline/training.py",
        '    if params.strategy != "multi_worker":\n',
        "    if True:\n",
        ("tests/test_resume.py", "-k", "multi_worker"),
    ),
    Mutant(
        "mirrored training runs on the replicas asked for",
        "src/trainstyles/pipeline/distribute.py",
        "        return tf.distribute.MirroredStrategy(mirrored_devices(params.logical_cpus))",
        "        mirrored_devices(params.logical_cpus)\n"
        "        return tf.distribute.get_strategy()",
        ("tests/test_distribute.py", "-k", "mirrored"),
    ),
    Mutant(
        "multi_worker trains one model across the workers",
        "src/trainstyles/pipeline/distribute.py",
        "        return tf.distribute.MultiWorkerMirroredStrategy()",
        "        return tf.distribute.get_strategy()",
        ("tests/test_distribute.py", "-k", "two_workers"),
    ),
    Mutant(
        "mirrored training matches one device",
        "src/trainstyles/pipeline/replicas.py",
        "    metric.update_state(share * replicas, sample_weight=batch_size)",
        "    metric.update_state(share, sample_weight=batch_size)",
        ("tests/test_distribute.py", "-k", "mirrored"),
    ),
    Mutant(
        "each fit-based style refuses multi_worker",
        "src/trainstyles/pipeline/styles/fit.py",
        "    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):",
        "    if False:",
        ("tests/test_distribute.py", "-k", "refuse"),
    ),
    Mutant(
        "the data set is verified by content SHA-256",
        "src/trainstyles/pipeline/data.py",
        "    if actual != expected:",
        "    if False:",
        ("tests/test_data.py", "tests/test_faults.py"),
    ),
    Mutant(
        "the bits do not depend on the number of cores",
        "src/trainstyles/pipeline/determinism.py",
        "    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)\n",
        "",
        ("tests/test_determinism.py",),
    ),
    Mutant(
        "train.jit_compile: true compiles every style through XLA",
        "src/trainstyles/pipeline/determinism.py",
        "    if xla:\n",
        "    if False:\n",
        ("tests/test_xla.py",),
    ),
    Mutant(
        "train.jit_compile: cpu leaves XLA off on a GPU, where op determinism holds the bits",
        "src/trainstyles/pipeline/determinism.py",
        "        return not on_gpu and not distributed\n",
        "        return not distributed\n",
        ("tests/test_params.py",),
    ),
    Mutant(
        "a file output appears whole or not at all",
        "src/trainstyles/pipeline/outputs.py",
        '    temp = final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")',
        "    temp = final",
        ("tests/test_outputs.py", "tests/test_faults.py"),
    ),
    Mutant(
        "a directory output appears whole or not at all",
        "src/trainstyles/pipeline/outputs.py",
        '    temp, old = final.with_name(f".{final.name}.tmp"), ',
        "    temp, old = final, ",
        ("tests/test_outputs.py", "tests/test_pipeline.py"),
    ),
    Mutant(
        "equal models give equal .keras bytes",
        "src/trainstyles/pipeline/outputs.py",
        '                del metadata["date_saved"]',
        "                pass",
        ("tests/test_outputs.py",),
    ),
    Mutant(
        "a fault is one line of the stage's own and exit status 1",
        "src/trainstyles/pipeline/stage.py",
        "    except StageError as error:\n        print(",
        "    except ZeroDivisionError as error:\n        print(",
        ("tests/test_faults.py",),
    ),
    Mutant(
        "a run that did not learn is flagged",
        "src/trainstyles/pipeline/outputs.py",
        "CHANCE_MARGIN = 0.05",
        "CHANCE_MARGIN = -1.0",
        ("tests/test_faults.py", "-k", "learn"),
    ),
    Mutant(
        "python -m trainstyles.tools.equivalence exits 1 when a claim fails",
        "src/trainstyles/tools/equivalence.py",
        "    return 0 if proven else 1",
        "    return 0",
        ("tests/test_equivalence.py", "-k", "command"),
    ),
    Mutant(
        "evaluate's logits are those of Keras' predict()",
        "src/trainstyles/pipeline/evaluation.py",
        "            for start in range(0, len(pixels), PREDICT_BATCH_SIZE)",
        "            for start in range(0, len(pixels), len(pixels))",
        ("tests/test_evaluation.py", "-k", "predict"),
    ),
    Mutant(
        "the machine fingerprint changes with the thread count",
        "src/trainstyles/pipeline/machine.py",
        '            "intra_op": intra_op_threads,',
        '            "intra_op": 2,',
        ("tests/test_machine.py",),
    ),
    Mutant(
        "an edit re-runs exactly the stages it affects",
        "dvc.yaml",
        "      - src/trainstyles/pipeline/styles/fit.py\n"
        "      - src/trainstyles/pipeline/training.py\n",
        "      - src/trainstyles/pipeline/training.py\n",
        ("tests/test_dvc_yaml.py",),
    ),
    Mutant(
        "a queued dvc exp run trains with its own copy's code",
        "dvc.yaml",
        "  train_clipped:\n    cmd: PYTHONPATH=src python",
        "  train_clipped:\n    cmd: python",
        ("tests/test_report.py", "-k", "experiments"),
    ),
    Mutant(
        "a stage's lines reach DVC before its process ends",
        "src/trainstyles/pipeline/stage.py",
        "    sys.stdout.flush()\n    sys.stderr.flush()\n    os._exit(status)",
        "    os._exit(status)",
        ("tests/test_faults.py", "-k", "reach_a_pipe"),
    ),
    Mutant(
        "a trainer refuses bad params before it loads TensorFlow",
        "stages/train.py",
        "    params = load_params()\n"
        "    from trainstyles.pipeline.training import train_style  # noqa: PLC0415\n",
        "    from trainstyles.pipeline.training import train_style  # noqa: PLC0415\n\n"
        "    params = load_params()\n",
        ("tests/test_faults.py", "-k", "before_it_loads and train_fit"),
    ),
    Mutant(
        "evaluate refuses bad params before it loads TensorFlow",
        "stages/evaluate.py",
        "from trainstyles.pipeline.data import load_split\n",
        "import tensorflow  # noqa: F401\nfrom trainstyles.pipeline.data import load_split\n",
        ("tests/test_faults.py", "-k", "before_it_loads and evaluate"),
    ),
    Mutant(
        "every CUDA library TensorFlow opens loads from the CUDA layer, cuSOLVER too",
        "src/trainstyles/pipeline/gpu.py",
        "            ctypes.CDLL(str(file), mode=ctypes.RTLD_GLOBAL)\n",
        "",
        ("tests/test_gpu.py", "-k", "hidden_library"),
    ),
    Mutant(
        "a hidden CUDA library fails gpu-check by name",
        "src/trainstyles/tools/gpu_check.py",
        "    failed = [opened for opened in checked if not opened.ok]",
        "    failed = []",
        ("tests/test_gpu.py", "-k", "hidden_library"),
    ),
    Mutant(
        "train.device gpu is refused where TensorFlow sees no GPU",
        "src/trainstyles/pipeline/gpu.py",
        '        if choice == "gpu":',
        "        if False:",
        ("tests/test_gpu.py", "-k", "refused"),
    ),
    Mutant(
        "a pull request fetches the base's run from the DVC remote rather than training it",
        "src/trainstyles/tools/same_machine.py",
        "        fill_from_remote(path)\n",
        "",
        ("tests/test_workflows.py", "-k", "pulls_mains"),
    ),
    Mutant(
        "the same-machine A/B retrains only the styles recorded on another machine",
        "src/trainstyles/tools/same_machine.py",
        "(machine is None or kind_differences(machine, here))",
        "machine != here",
        ("tests/test_workflows.py", "-k", "pulls_mains"),
    ),
    Mutant(
        "a pull request from a fork posts no comment",
        ".github/workflows/compare.yml",
        "        if: github.event.pull_request.head.repo.full_name == github.repository\n",
        "",
        ("tests/test_workflows.py", "-k", "fork"),
    ),
    Mutant(
        "make report changes no tracked file",
        "src/trainstyles/tools/report.py",
        '    page.write_text("\\n\\n".join(parts) + "\\n")\n',
        '    page.write_text("\\n\\n".join(parts) + "\\n")\n'
        '    replace_block(README, "committed run", committed_run_block())\n',
        ("tests/test_report.py", "-k", "readme"),
    ),
    Mutant(
        "a missing PyTorch peer is said in one line on stderr",
        "src/trainstyles/tools/bench/timing.py",
        '        print(f"bench: warning: {missing_peer_note(reason)}", '
        "file=sys.stderr, flush=True)\n",
        "",
        ("tests/test_bench.py", "-k", "missing_peer"),
    ),
    Mutant(
        "each bench figure names the kind of machine it was measured on",
        "src/trainstyles/tools/bench/figures.py",
        '    return figures.get("measured_on") or machine_kind(results["machine"])',
        '    return machine_kind(results["machine"])',
        ("tests/test_bench.py", "-k", "kind"),
    ),
    Mutant(
        "each style is a colour of its own in the overlaid curves, each revision a dash",
        ".dvc/plots/styles.json",
        '"color": {\n      "field": "series",',
        '"color": {\n      "field": "rev",',
        ("tests/test_plots.py", "tests/test_browser.py", "tests/test_report.py", "-k", "colour"),
    ),
    Mutant(
        "every shell and YAML block of the pages is run or says why not",
        "tests/test_docs.py",
        "        elif block.language in SHELLS and recipe(block) not in run:",
        "        elif False:",
        ("tests/test_docs.py", "-k", "unmarked"),
    ),
    Mutant(
        "a params block of the pages is pasted into params.yaml before it loads",
        "tests/test_docs.py",
        '    merge(params, YAML(typ="safe").load(block.text))\n',
        "",
        ("tests/test_docs.py", "-k", "multi_gpu"),
    ),
    Mutant(
        "a run is judged by the sweep record of its own machine kind",
        "src/trainstyles/tools/noise.py",
        '        return kind_name(recorded) != kind, len(apart), -len(found[path]["runs"])',
        '        return (-len(found[path]["runs"]),)',
        ("tests/test_noise.py", "-k", "judged"),
    ),
    Mutant(
        "a sweep of fewer runs never silently replaces a larger record",
        "src/trainstyles/tools/sweep.py",
        "    if requested < held and not replace:",
        "    if False:",
        (
            "tests/test_noise.py",
            "tests/test_sweep_shards.py",
            "-k",
            "smaller_sweep or larger_record and not refuses",
        ),
    ),
    Mutant(
        "the tests of the committed run read HEAD, whichever kind trained the workspace",
        "tests/test_noise.py",
        "COMMITTED = committed()\n",
        "COMMITTED = REPO\n",
        ("tests/test_noise.py", "-k", "kind_no_record_has"),
    ),
    Mutant(
        "gpu-check fails a CUDA library loaded from another file than its wheel's",
        "src/trainstyles/pipeline/gpu.py",
        "    if file.resolve() not in loaded:",
        "    if False:",
        ("tests/test_gpu.py", "-k", "ld_library_path"),
    ),
    Mutant(
        "the CUDA cache is kept where a later run finds it, not under /tmp",
        "src/trainstyles/pipeline/gpu.py",
        "        return workspace / WORKSPACE_CUDA_CACHE",
        "        return IMAGE_CUDA_CACHE",
        ("tests/test_gpu.py", "-k", "cuda_cache"),
    ),
    Mutant(
        "a stage on a host with the CUDA layer and no driver prints no cuInit error",
        "src/trainstyles/pipeline/gpu.py",
        "        with stderr_without(CUINIT_FAILED):\n"
        '            tf.config.list_physical_devices("GPU")\n',
        '        tf.config.list_physical_devices("GPU")\n',
        ("tests/test_gpu.py", "-k", "cuinit"),
    ),
    Mutant(
        "gpu-check says a GPU runs machine code built for its own major version only",
        "src/trainstyles/tools/gpu_check.py",
        'if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:',
        'if kind == "sm" and built <= capability:',
        ("tests/test_gpu.py", "-k", "machine_code or which_code"),
    ),
]


def verdict(mutant: Mutant, repo: Path) -> str:
    """What the tests named for `mutant` make of its edit in `repo`: "killed" (one fails),
    "SURVIVED" (they pass), or why they could not tell on this machine (every one skipped,
    since its control does not bite here: the edit breaks nothing that this CPU computes)."""
    target = repo / mutant.path
    original = target.read_text()
    if original.count(mutant.old) != 1:
        sys.exit(f"mutants: error: {mutant.path} no longer holds the code of “{mutant.guarantee}”")
    target.write_text(original.replace(mutant.old, mutant.new))
    try:
        env = {**os.environ, "PYTHONPATH": str(repo / "src")}
        # Both tiers, as CI runs them: a guarantee the slow tier holds counts.
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-rs", "-p", "no:cacheprovider"]
        command += ["-m", "not real"]
        result = subprocess.run(
            [*command, *mutant.tests],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        target.write_text(original)
    if result.returncode != 0:
        return "killed"
    summary = result.stdout.strip().splitlines()[-1]
    if " passed" not in summary and " skipped" in summary:
        reasons = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", result.stdout, re.MULTILINE)
        return "skipped here: " + "; ".join(sorted(set(reasons)))
    return "SURVIVED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="run only the mutants whose guarantee has these")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if all(word in m.guarantee for word in args.words)]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as work:
        repo = committed_checkout(Path(work) / "repo")
        for mutant in chosen:
            start = time.monotonic()
            verdicts.append(verdict(mutant, repo))
            took = f"({time.monotonic() - start:.0f} s)"
            shown = verdicts[-1].split(":")[0]
            print(f"{shown:8} {mutant.guarantee} {took}", flush=True)
            if shown != verdicts[-1]:
                print(f"         {verdicts[-1]}", flush=True)
    killed, survived = verdicts.count("killed"), verdicts.count("SURVIVED")
    untold = len(verdicts) - killed - survived
    print(
        f"mutants: {killed} of {len(chosen)} killed by the tests"
        + (f", {survived} SURVIVED" if survived else "")
        + (f", {untold} not checkable on this machine (their tests skipped)" if untold else "")
    )
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
