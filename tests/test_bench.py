"""The bench's arithmetic, tables and skips. Speed is the bench's to report, never a test's."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, learnable_split, tiny_params
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import STYLES, ModelParams
from trainstyles.tools.bench import dispatches, figures, limit, tables, timing
from trainstyles.tools.bench.__main__ import machine
from trainstyles.tools.bench.__main__ import main as bench_main
from trainstyles.tools.commands import copy_worktree
from trainstyles.tools.machines import kind_name
from trainstyles.tools.pages import BENCH_PAGE

TUTORIAL = ModelParams(hidden_units=[256, 128], num_classes=10, hidden_order=0)
# A fingerprint as `machine.fingerprint` writes it, of a made-up CPU: "Test Xeon 6/106".
FINGERPRINT = {
    "cpu": {"model_name": "Test(R) Xeon(R) CPU @ 2.80GHz", "vendor": "GenuineTest",
            "family_model": "6/106", "features": ["avx2"], "caches": {"L2u": "1024K"}},
    "threads": {"intra_op": 2, "onednn": "default"},
    "gpu": [],
    "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6"},
}  # fmt: skip
CPU = kind_name(FINGERPRINT)


def test_flops_count_forward_weight_gradients_and_all_input_gradients_but_the_pixels():
    # Multiply-adds of one forward pass: 784·256 + 256·128 + 128·10 = 234,752.
    forward = 2 * (784 * 256 + 256 * 128 + 128 * 10)
    assert figures.inference_flops_per_sample(TUTORIAL) == forward
    # Backward: the weight gradients cost a forward pass; the input gradients skip layer 1.
    assert figures.training_flops_per_sample(TUTORIAL) == 2 * forward + 2 * (256 * 128 + 128 * 10)
    assert figures.epoch_flops(TUTORIAL, 55_000, 5_000) == 55_000 * 1_007_104 + 5_000 * 469_504


def test_spread_is_median_and_range():
    assert figures.median_range([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0}


def test_ratios_pair_each_repeat_with_the_peers_same_repeat():
    times = {"train_fit": [[2.0, 2.2], [4.0, 4.0]], "pytorch": [[1.0, 1.0], [4.0, 4.0]]}
    assert figures.paired_ratios(times, "pytorch") == {"train_fit": [2.1, 1.0]}


def results(
    times: dict, profiles: dict | None = None, kinds: dict | None = None, peer_missing=None
) -> dict:
    """Results as the bench summarises them, every figure measured on CPU unless `kinds` says."""
    limit = {"epoch_seconds": 0.5, "epoch_flops": 1, "gemm_gflops": 1.0, "measured_on": CPU}
    measured = {
        "times": times,
        "dispatches": {name: [16] * len(runs) for name, runs in times.items()},
        "train_size": 1000,
        "val_size": 100,
        "peer_missing": peer_missing,
        "kinds": {name: CPU for name in times} | (kinds or {}),
        "profiles": profiles or {},
    }
    summary = figures.summarise(tiny_params(), measured, limit)
    return summary | {"machine": {"fingerprint": FINGERPRINT, "kind": CPU}}


def profiled_run(imported: float, tracing: float, steps: list[float]) -> dict:
    return {"import": imported, "tracing": tracing, "parts": {"training steps": steps}}


def test_the_profile_table_has_each_variants_medians_and_blanks_for_unsplit_epochs():
    summary = results(
        {"train_fit": [[1.0], [1.0], [1.0]], "train_raw": [[1.0]]},
        {
            "train_fit": [
                profiled_run(5.0, 2.0, [0.5, 0.7]),
                profiled_run(6.0, 1.0, [0.9, 0.6]),
                profiled_run(9.0, 3.0, [0.8, 0.8]),
            ],
            "train_raw": [{"import": 4.0, "tracing": 1.5, "parts": {}}],
        },
    )
    caption, header, imported, tracing, steps = tables.profile_table(summary).splitlines()
    assert caption == f"Profiles, measured on {CPU}:"
    assert header.split() == ["seconds", "(median)", "train_fit", "train_raw"]
    assert imported.split()[-2:] == ["6.00", "4.00"]
    assert tracing.split()[-2:] == ["2.00", "1.50"]
    assert steps.split()[-1] == "0.750"  # train_raw's cell is blank: its epochs are not split


def test_the_table_has_a_row_per_variant_with_ratios_to_the_peer_and_the_limit():
    table = tables.epoch_table(results({"train_raw": [[1.0, 3.0]], "pytorch": [[1.0, 1.0]]}))
    caption, header, raw, peer, limit = table.splitlines()
    assert caption == f"Epochs, measured on {CPU}:"
    assert raw.split() == [
        "train_raw", "2.00", "(1.00-3.00)", "500", "2.00", "(2.00-2.00)", "4.00", "16",
    ]  # fmt: skip
    assert peer.split() == ["pytorch", "1.00", "(1.00-1.00)", "1,000", "2.00", "16"]
    assert limit.split() == ["limit", "0.50", "1.00"]
    assert header.split()[-1] == "dispatches/epoch" and raw.index("16") == header.index("disp")
    # Columns line up: each header title starts where its figures start.
    assert raw.index("2.00") == header.index("s/epoch")


def test_a_missing_peer_is_said_on_stderr_and_its_column_stays_blank(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no .venv-torch here
    reason = timing.peer_missing()
    assert reason == "no .venv-torch (`make bench` makes it, from requirements-torch.txt)"
    said = f"no PyTorch peer: {reason}; the x pytorch column is blank"
    assert capsys.readouterr() == ("", f"bench: warning: {said}\n")
    assert f"bench: warning: {said}\n" in (REPO / BENCH_PAGE).read_text()  # as shown

    summary = results({"train_raw": [[2.0, 2.0]]}, peer_missing=reason)
    assert summary["peer_missing"] == reason and summary["ratio_to_peer"] == {}
    caption, header, raw, limit, note = tables.epoch_table(summary).splitlines()
    assert caption == f"Epochs, measured on {CPU}:" and limit.split() == ["limit", "0.50", "1.00"]
    assert "x pytorch (min-max)" in header and note == f"N{said[1:]}."
    # The peer's cell is blank: the next figure starts under the next column's title.
    assert raw.split() == ["train_raw", "2.00", "(2.00-2.00)", "500", "4.00", "16"]
    assert raw.index("4.00") == header.index("x limit")
    page = tables.page_text(completed(summary))
    assert "| train_raw | 2.00 (2.00-2.00) | 500 |  | 4.00 | 16 |" in page
    assert f"N{said[1:]}." in page


def test_a_torch_that_did_not_install_is_named_with_pips_error(tmp_path):
    venv = tmp_path / ".venv-torch"
    venv.mkdir()
    (venv / "not-installed").write_text("No matching distribution found for torch==2.13.0\n")
    assert timing.torch_missing(venv) == (
        f"torch did not install in {venv} (No matching distribution found for torch==2.13.0)"
    )


def test_a_torch_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch):
    (tmp_path / "torch").mkdir()  # found first by `python -c` in this directory
    (tmp_path / "torch" / "__init__.py").write_text(
        'raise ImportError("libtorch_cpu.so: cannot open shared object file")\n'
    )
    (tmp_path / ".venv-torch" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-torch" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    assert timing.torch_missing() == (
        "torch cannot be imported in .venv-torch "
        "(ImportError: libtorch_cpu.so: cannot open shared object file)"
    )


@pytest.mark.slow  # makes a venv
def test_the_torch_venv_that_did_not_install_keeps_pips_error_in_one_line(tmp_path):
    """make's recipe, with a pip that finds no torch on either index: the venv keeps pip's
    error line, and the bench says it."""
    pip = tmp_path / "pip"
    pip.write_text(
        "#!/bin/sh\necho 'WARNING: Retrying' >&2\n"
        "echo 'ERROR: No matching distribution found for torch==2.13.0' >&2\nexit 1\n"
    )
    pip.chmod(0o755)
    venv = tmp_path / "venv"
    made = subprocess.run(
        ["make", "-o", ".venv/.installed", f"TORCH_VENV={venv}", f"TORCH_PIP={pip}",
         f"{venv}/.installed"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "PyTorch's CPU index not reached: torch comes from PyPI" in made.stdout
    assert not (venv / ".installed").exists()
    assert timing.torch_missing(venv) == (
        f"torch did not install in {venv} (No matching distribution found for torch==2.13.0)"
    )


def test_without_jax_the_jax_rows_are_left_out_and_the_bench_says_why(monkeypatch, capsys):
    # A None entry in sys.modules makes `import jax` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "jax", None)
    reason = timing.jax_missing()
    assert reason == "jax is not installed (`make bench` installs requirements-bench.txt)"
    said = f"no JAX peers: {reason}; their rows are left out"
    assert capsys.readouterr() == ("", f"bench: warning: {said}\n")
    summary = results({"train_raw": [[2.0, 2.0]], "pytorch": [[1.0, 1.0]]})
    summary["jax_missing"] = reason
    assert tables.epoch_table(summary).splitlines()[-1] == f"N{said[1:]}."


def test_matmul_throughput_is_a_positive_rate():
    assert 0 < limit.matmul_flops_per_second(64, 64, 64, seconds=0.05) < math.inf


def test_the_limits_gemms_run_on_the_styles_threads_and_say_which_blas():
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    def threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = threads()
    with limit.gemm_threads(1) as blas:
        assert threads() and set(threads()) == {1}
    assert threads() == before
    assert blas.endswith(", 1 threads") and blas.split()[0] in {"openblas", "mkl", "blis"}


def test_a_style_is_timed_epoch_by_epoch_after_the_warm_up():
    train, val = learnable_split(256, seed=40), learnable_split(64, seed=41)
    timed = timing.timed_style("train_raw", tiny_params(), train, val, epochs=2)
    assert len(timed["epochs"]) == 2 and all(s > 0 for s in timed["epochs"])
    assert timed["profile"]["import"] >= 0 and timed["profile"]["parts"] == {}  # no callbacks
    # 8 batches of 32 in calls of up to 32 steps: one graph call, and the ops around it.
    assert timed["dispatches_per_epoch"] > 1


def test_a_fit_styles_epochs_are_split_into_parts_that_add_up_to_them():
    train, val = learnable_split(256, seed=40), learnable_split(64, seed=41)
    timed = timing.timed_style("train_fit", tiny_params(), train, val, epochs=2)
    parts = timed["profile"]["parts"]
    assert {"ModelCheckpoint.on_epoch_end", "TensorBoard.on_epoch_end"} < set(parts)
    assert {"BackupAndResume.on_epoch_end", "EarlyStopping.on_epoch_end"} < set(parts)
    assert all(len(seconds) == 2 for seconds in parts.values())
    assert all(seconds > 0 for seconds in parts["training steps"] + parts["validation"])
    for epoch, seconds in enumerate(timed["epochs"]):
        assert sum(part[epoch] for part in parts.values()) == pytest.approx(seconds)


def test_each_part_of_an_epoch_lies_between_its_marks():
    starts = [0.0, 10.0, 20.0, 30.0]  # the warm-up epoch, two timed ones, the closing one
    marks = [
        {"validation_begins": 16.0, "validation_ends": 17.0, "ends": [17.5, 18.0, 19.0]},
        {"validation_begins": 25.0, "validation_ends": 27.0, "ends": [27.0, 27.5, 29.5]},
        {"validation_begins": 35.0, "validation_ends": 36.0, "ends": [36.0, 37.0, 38.0]},
    ]
    parts = timing.epoch_parts(starts, marks, ["ModelCheckpoint", "TensorBoard"])
    assert parts == {
        "training steps": [6.0, 5.0],
        "validation": [1.0, 2.0],
        "ModelCheckpoint.on_epoch_end": [0.5, 0.5],
        "TensorBoard.on_epoch_end": [1.0, 2.0],
        "the rest": [1.5, 0.5],
    }


def test_eager_dispatches_count_each_op_and_graph_call_but_not_the_graphs_own_ops():
    import tensorflow as tf  # noqa: PLC0415

    doubled = tf.function(lambda x: x * 2 + 1)  # two ops inside, one call outside
    x = tf.constant([1.0, 2.0])
    doubled(x)  # traced before counting: building a graph is no dispatch either
    counter = dispatches.EagerDispatches()
    counter.start()
    doubled(x), doubled(x), doubled(x)
    tf.reduce_sum(x + 1)
    float(x[0] * 1)  # a read of a value is not an op; the slice and the product are
    counter.stop()
    doubled(x)
    assert counter.count == 3 + 2 + 2


def split_dir(directory, parts: dict):
    """data/split as the split stage writes it, of `parts`' splits."""
    for name, part in parts.items():
        (directory / name).mkdir(parents=True)
        np.save(directory / name / "images.npy", part.images)
        np.save(directory / name / "labels.npy", part.labels)
    return directory


@pytest.mark.slow  # compiles and trains: seconds
def test_the_jax_peers_train_the_same_epochs_with_a_dispatch_per_batch_or_per_epoch():
    pytest.importorskip("jax", reason="the bench extra (requirements-bench.txt)")
    from trainstyles.tools.bench import jax_peer  # noqa: PLC0415

    train, val = learnable_split(300, seed=40), learnable_split(64, seed=41)
    params = tiny_params()
    step = jax_peer.timed_jax(figures.JAX_STEP, params, train, val, epochs=2)
    scan = jax_peer.timed_jax(figures.JAX_SCAN, params, train, val, epochs=2)
    for timed in (step, scan):
        assert len(timed["epochs"]) == 2 and all(s > 0 for s in timed["epochs"])
        assert all(math.isfinite(value) for value in timed["losses"].values())
    # 300 images: 9 batches of 32 and a ragged one of 12, then one validation call.
    assert step["dispatches_per_epoch"] == 10 + 1 and scan["dispatches_per_epoch"] == 1 + 1
    # The scanned epoch takes the same steps, the ragged one included.
    assert scan["losses"] == pytest.approx(step["losses"], rel=1e-4)


@pytest.mark.slow  # starts JAX in a process of its own
def test_the_jax_peers_xla_threads_follow_the_cores_they_are_given():
    """XLA's CPU backend takes no thread count: use_cores sizes its Eigen pool."""
    pytest.importorskip("jax", reason="the bench extra (requirements-bench.txt)")
    program = (
        "import os\n"
        "from trainstyles.tools.bench.jax_peer import use_cores\n"
        "use_cores(1)\n"
        "import jax, jax.numpy as jnp\n"
        "jax.jit(lambda a: a @ a)(jnp.ones((256, 256))).block_until_ready()\n"
        "tasks = os.listdir('/proc/self/task')\n"
        "names = [open(f'/proc/self/task/{task}/comm').read().strip() for task in tasks]\n"
        "print(names.count('tf_XLAEigen'))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert ran.stdout.split()[-1:] == ["1"], ran.stderr


@pytest.mark.slow  # starts torch in another venv: seconds
def test_the_pytorch_peer_trains_the_same_epochs_in_its_own_venv(tmp_path, monkeypatch):
    if timing.torch_missing(REPO / timing.TORCH_VENV):
        pytest.skip("no .venv-torch with torch: `make bench` makes it")
    train, val = learnable_split(300, seed=40), learnable_split(64, seed=41)
    monkeypatch.setattr(timing, "SPLIT_DIR", split_dir(tmp_path, {"train": train, "val": val}))
    monkeypatch.setattr(timing, "TORCH_VENV", REPO / timing.TORCH_VENV)
    timed = timing.timed_torch(tiny_params(), epochs=2)
    assert len(timed["epochs"]) == 2 and all(s > 0 for s in timed["epochs"])
    assert timed["torch"].startswith("2.") and timed["dispatches_per_epoch"] > 10 * 3


def test_the_pipeline_copy_holds_the_files_git_sees_and_not_the_ignored_ones(tmp_path):
    copy_worktree(REPO, tmp_path)
    assert (tmp_path / "dvc.yaml").is_file() and (
        tmp_path / "src/trainstyles/tools/bench/timing.py"
    ).is_file()
    assert not (tmp_path / ".venv").exists()
    assert (tmp_path / ".git").is_dir()


def completed(summary: dict) -> dict:
    """`summary` with the rest of what `make bench` writes, with made-up figures: the limit's
    shapes, the machine's cores and versions, the pipeline."""
    summary["limit"] |= {"model_shape_gflops": [2.0, 1.5, 0.5]}
    summary["machine"] |= {
        "cores": 2, "load_average_at_start": 0.5, "python": "3.11.7",
        "tensorflow": "2.21.0", "keras": "3.15.1", "gemm_gflops_seen": [1.0],
    }  # fmt: skip
    summary["pipeline"] = {
        "stages": {"prepare": {"seconds": 0.7, "peak_rss_mb": 124.2, "measured_on": CPU}},
        "full_repro_seconds": 12.3,
        "epochs_run": {"train_raw": 4},
        "measured_on": CPU,
        "noop_repro_seconds": {"median": 1.5, "min": 1.2, "max": 1.7},
    }
    return summary


def results_file(path, kinds: dict | None = None):
    """A results.json as `make bench` writes it, with made-up figures."""
    summary = results(
        {"train_raw": [[1.0, 3.0]], "pytorch": [[1.0, 1.0]]},
        {"train_raw": [profiled_run(5.25, 1.5, [0.25])]},
        kinds,
    )
    path.write_text(json.dumps(completed(summary)))
    return path


def test_the_page_is_rendered_from_a_results_file_without_measuring(tmp_path):
    source = results_file(tmp_path / "results.json")
    page = tmp_path / "bench.md"
    page.write_text("# Bench\n\n<!-- bench -->\nold figures\n<!-- /bench -->\n\nafter\n")

    assert bench_main(["--page", "--out", str(source), "--doc", str(page)]) == 0
    text = page.read_text()
    block = text.split("<!-- bench -->\n")[1].split("<!-- /bench -->")[0]
    assert "old figures" not in text and text.startswith("# Bench\n") and text.endswith("after\n")
    assert "| train_raw | 2.00 (1.00-3.00) | 500 | 2.00 (2.00-2.00) | 4.00 |" in block
    assert "| limit | 0.50 |  |  | 1.00 |" in block
    assert "| prepare | 0.7 | 124 |" in block and "| dvc repro -f (all 1) | 12.3 |  |" in block
    assert f"on {CPU}, 2 cores" in block and "GPU: none" in block
    assert f"Epochs, measured on {CPU}:\n\n|  | s/epoch" in block
    assert f"Profiles, measured on {CPU}:\n\n| seconds (median) |" in block
    assert f"Pipeline, measured on {CPU}:\n\n| stage |" in block
    assert "| per run: import TensorFlow, Keras | 5.25 |" in block
    assert "| per epoch: training steps | 0.250 |" in block
    # 12.3 s less 4 epochs at train_raw's median of 2.0 s.
    assert "| fixed overhead: the above less its 4 epochs at their medians | 4.3 |  |" in block


def test_results_that_did_not_count_the_epochs_show_no_overhead(tmp_path):
    results = json.loads(results_file(tmp_path / "results.json").read_text())
    del results["pipeline"]["epochs_run"]
    assert figures.fixed_overhead(results) is None
    assert "fixed overhead" not in tables.page_text(results)


def test_a_page_without_the_block_is_an_error_not_a_silent_pass(tmp_path):
    source = results_file(tmp_path / "results.json")
    page = tmp_path / "bench.md"
    page.write_text("# Bench\n")
    assert bench_main(["--page", "--out", str(source), "--doc", str(page)]) == 1
    assert page.read_text() == "# Bench\n"


def test_results_written_elsewhere_leave_the_page_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / BENCH_PAGE
    page.parent.mkdir()
    page.write_text("<!-- bench -->\nthe committed figures\n<!-- /bench -->\n")
    source = results_file(tmp_path / "lever.json")
    assert bench_main(["--page", "--out", str(source)]) == 0
    assert page.read_text() == "<!-- bench -->\nthe committed figures\n<!-- /bench -->\n"


def test_each_style_is_timed_again_without_xla_unless_told_not_to():
    assert figures.variants(without_xla=True, peers=["pytorch", figures.JAX_SCAN]) == [
        *STYLES,
        *(f"{style} (no XLA)" for style in STYLES),
        "jax, the epoch as one lax.scan",
        "pytorch",
    ]
    assert figures.variants(without_xla=False, peers=[]) == list(STYLES)


def test_the_page_says_what_the_rows_without_xla_are_only_when_it_has_them(tmp_path):
    results = json.loads(results_file(tmp_path / "results.json").read_text())
    assert "(no XLA)" not in tables.page_text(results)
    results["epochs"]["train_raw (no XLA)"] = results["epochs"]["train_raw"]
    text = tables.page_text(results)
    assert "| train_raw (no XLA) | 2.00 (1.00-3.00) |" in text
    assert "The rows marked (no XLA) train with `train.jit_compile: false`" in text


def test_the_bench_machine_is_the_trainers_fingerprint_and_its_kind():
    here = machine(intra_op_threads=2)
    assert here["fingerprint"] == fingerprint(2)  # no devices: the bench's own process
    assert here["kind"] == kind_name(here["fingerprint"])
    assert here["kind"].endswith(here["fingerprint"]["cpu"]["family_model"])


def test_a_table_that_mixes_kinds_names_each_rows_kind(tmp_path):
    """A GPU host: the styles train on its GPU, the peer and the limit's GEMMs on its CPU."""
    gpu = "NVIDIA H200"
    summary = json.loads(results_file(tmp_path / "results.json", {"train_raw": gpu}).read_text())
    caption, header, raw, peer, limit = tables.epoch_table(summary).splitlines()
    assert caption == "Epochs, each row measured on the kind it names:"
    assert header.endswith("measured on") and raw.endswith(gpu)
    assert peer.endswith(CPU) and limit.endswith(CPU)
    summary["epochs"]["train_fit"] = summary["epochs"]["train_raw"] | {"measured_on": CPU}
    summary["profile"]["train_fit"] = summary["profile"]["train_raw"]
    assert tables.profile_table(summary).splitlines()[:3:2] == [
        "Profiles, each column measured on the kind it names:",
        f"measured on                                {gpu}  {CPU}",
    ]
    summary["pipeline"]["stages"]["train_raw"] = {"seconds": 9.0, "peak_rss_mb": 1.0}
    summary["pipeline"]["stages"]["train_raw"]["measured_on"] = gpu
    summary["pipeline"]["measured_on"] = gpu
    text = tables.page_text(summary)
    assert (
        "| train_raw | 2.00 (1.00-3.00) | 500 | 2.00 (2.00-2.00) | 4.00 | 16 | NVIDIA H200 |"
        in text
    )
    assert f"| limit | 0.50 |  |  | 1.00 |  | {CPU} |" in text
    assert f"| prepare | 0.7 | 124 | {CPU} |" in text
    assert "| train_raw | 9.0 | 1 | NVIDIA H200 |" in text
    assert "| dvc repro -f (all 2) | 12.3 |  | NVIDIA H200 |" in text
    assert f"| dvc repro (no-op) | 1.50 (1.20-1.70) |  | {CPU} |" in text


def test_results_from_before_the_fingerprint_name_the_cpu_model_alone(tmp_path):
    """An older bench recorded `machine.cpu`, the model name without family/model, and no kind
    for each figure: the page names what it can, and invents nothing."""
    old = json.loads(results_file(tmp_path / "results.json").read_text())
    old["machine"] = {key: old["machine"][key] for key in old["machine"] if key != "kind"}
    old["machine"] |= {"cpu": "AMD EPYC", "gpu": "none"}
    del old["machine"]["fingerprint"], old["limit"]["measured_on"], old["pipeline"]["measured_on"]
    for measured in [*old["epochs"].values(), *old["pipeline"]["stages"].values()]:
        del measured["measured_on"]
    text = tables.page_text(old)
    assert "on AMD EPYC (family/model not recorded), 2 cores" in text and "GPU: none" in text
    for title in ("Epochs", "Profiles", "Pipeline"):
        assert f"{title}, measured on AMD EPYC:" in text
