"""The machine fingerprint: stable on one machine, different where the bits would differ."""

import json
import os
import subprocess
import sys

from conftest import REPO
from trainstyles.pipeline.machine import fingerprint, gpus
from trainstyles.tools.machines import comparison, describe, differences, kind_name, kind_slug

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, NVIDIA H100 80GB HBM3, 580.95.05"
echo "1, NVIDIA H100 80GB HBM3, 580.95.05"
"""


def test_the_fingerprint_is_the_same_bytes_every_time_on_one_machine():
    """It is a DVC out of each trainer: any volatile field would break same-machine identity."""
    assert json.dumps(fingerprint(2)) == json.dumps(fingerprint(2))


def test_the_fingerprint_names_what_changes_kernels():
    machine = fingerprint(2)
    assert machine["cpu"]["model_name"] and machine["cpu"]["vendor"]
    assert "avx2" in machine["cpu"]["features"] or "sse4_2" in machine["cpu"]["features"]
    assert any(name.startswith("L2") for name in machine["cpu"]["caches"])
    assert machine["threads"] == {"intra_op": 2, "onednn": "default"}
    assert set(machine["versions"]) == {"tensorflow", "keras", "numpy"}
    assert machine["cpu"]["model_name"] in describe(machine)


def test_the_thread_split_and_onednn_switch_are_part_of_the_machine(monkeypatch):
    default = fingerprint(2)
    assert differences(default, fingerprint(4)) == ["threads.intra_op"]
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # Eigen's kernels instead of oneDNN's
    assert differences(default, fingerprint(2)) == ["threads.onednn"]


def test_gpus_come_from_the_driver_and_respect_cuda_visible_devices(tmp_path, monkeypatch):
    tool = tmp_path / "nvidia-smi"
    tool.write_text(FAKE_NVIDIA_SMI)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen = gpus()
    assert [gpu["name"] for gpu in seen] == ["NVIDIA H100 80GB HBM3"] * 2
    assert seen[0]["driver"] == "580.95.05" and seen[0]["cuda"]  # TensorFlow's build record
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert len(gpus()) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus() == []


def test_comparison_says_same_kind_other_kind_or_unrecorded():
    here = fingerprint(2)
    other = {**here, "cpu": {**here["cpu"], "features": ["avx", "avx2"], "model_name": "Other"}}
    same = comparison(here, {"train_fit": here, "train_raw": here}, "HEAD")
    assert same == "this machine is the kind HEAD trained on: the same inputs give the same bits"
    differing = comparison(here, {"train_fit": here, "train_raw": other}, "HEAD")
    assert differing.startswith(
        "this machine differs from the one HEAD trained on in cpu.features, cpu.model_name:"
    )
    assert "rounding alone" in differing
    assert comparison(here, {"train_fit": None}, "HEAD").startswith("HEAD records no machine")


def test_the_check_reads_the_committed_fingerprints_without_tensorflow():
    """`python -m trainstyles.tools.machines` is make repro's last line: one line, no TensorFlow."""
    code = (
        "import sys, runpy; sys.argv = ['machines', '--against', 'HEAD']\n"
        "try:\n    runpy.run_module('trainstyles.tools.machines', run_name='__main__')\n"
        "finally:\n    assert 'tensorflow' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"machines: {describe(fingerprint(2))}; ")


def test_the_devices_a_run_trained_on_are_recorded_and_said_but_not_compared():
    """Only a trainer can ask TensorFlow which device it uses: the check after `make repro`
    compares the rest, which decides that device together with train.device."""
    here = fingerprint(2)
    trained = fingerprint(2, ["GPU:0 (NVIDIA H200, compute capability 9.0)"])
    assert differences(here, trained) == ["devices"]
    assert describe(trained).endswith("; trained on GPU:0 (NVIDIA H200, compute capability 9.0)")
    same = comparison(here, {"train_fit": trained}, "HEAD")
    assert same.startswith("this machine is the kind HEAD trained on")


def test_a_kind_is_named_by_the_gpu_that_trained_else_the_cpu_model_and_family():
    amd = {"cpu": {"model_name": "AMD EPYC 7B13 64-Core Processor", "vendor": "AuthenticAMD",
                   "family_model": "25/1"}, "gpu": [], "devices": ["CPU:0"]}  # fmt: skip
    intel = {"cpu": {"model_name": "Intel(R) Xeon(R) Processor @ 2.80GHz",
                     "vendor": "GenuineIntel", "family_model": "6/106"}, "gpu": []}  # fmt: skip
    assert kind_name(amd) == "AMD EPYC 7B13 25/1"
    assert kind_name(intel) == "Intel Xeon 6/106"
    assert kind_slug(intel) == "intel-xeon-6-106"
    h200 = {**intel, "gpu": [{"name": "NVIDIA H200"}], "devices": ["GPU:0"]}
    assert kind_name(h200) == "NVIDIA H200"
    # A GPU beside the CPU that trained does not name the kind.
    assert kind_name({**h200, "devices": ["CPU:0"]}) == "Intel Xeon 6/106"
