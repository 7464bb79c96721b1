"""GPU readiness without a GPU: the pinned CUDA layer, each library TensorFlow opens, the device
choice, and the causes a stage gives when TensorFlow sees no GPU."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import tensorflow as tf
from packaging.requirements import Requirement

from conftest import REPO
from trainstyles import StageError, StageWarning
from trainstyles.pipeline import gpu
from trainstyles.pipeline.gpu import (
    ANY_GPU,
    LIBRARIES,
    Opened,
    build_majors,
    driver_cuda_version,
    no_gpu_cause,
    soname,
    use_devices,
)

NO_DRIVER = "this machine has an NVIDIA driver: TensorFlow may see a GPU here"


def cuda_layer() -> dict[str, str]:
    """requirements-cuda.txt: each wheel and its pinned version."""
    lines = (REPO / "requirements-cuda.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {pin.name: str(pin.specifier).removeprefix("==") for pin in pins}


def test_the_cuda_layer_pins_every_wheel_of_tensorflow_and_cuda_exactly():
    """What `pip install tensorflow[and-cuda]` would bring, each at one version it accepts."""
    wanted = [
        Requirement(text.split(";")[0])
        for text in importlib.metadata.requires("tensorflow")
        if 'extra == "and-cuda"' in text
    ]
    pinned = cuda_layer()
    assert sorted(pinned) == sorted(requirement.name for requirement in wanted)
    for requirement in wanted:
        assert requirement.specifier.contains(pinned[requirement.name]), requirement


def test_each_library_is_opened_at_the_major_version_of_tensorflows_build():
    majors = build_majors()  # from tf.sysconfig.get_build_info()
    names = {library.name: soname(library, majors) for library in LIBRARIES}
    build = tf.sysconfig.get_build_info()
    assert names["cudnn"] == f"libcudnn.so.{build['cudnn_version'].split('.')[0]}"
    assert names["cudart"] == f"libcudart.so.{build['cuda_version'].split('.')[0]}"
    # Each library's wheel is in the CUDA layer, for the CUDA major that TensorFlow was built with.
    wheels = {library.wheel.format(cuda=majors["cuda"]) for library in LIBRARIES}
    assert wheels <= set(cuda_layer())


NOT_INSTALLED = "nvidia-cudnn-cu12 is not installed (the CUDA layer: make setup CUDA=1)"
CAUSES = [
    (None, [],
     "no NVIDIA driver (libcuda.so.1 not found; a container needs `docker run --gpus all`)"),
    ((11, 8), [],
     "the driver supports CUDA 11.8, older than the CUDA 12 TensorFlow is built with: update "
     "the NVIDIA driver"),
    ((12, 4), [Opened("libcudnn.so.9", False, NOT_INSTALLED, ANY_GPU)],
     f"libcudnn.so.9: {NOT_INSTALLED}"),
    ((12, 4), [Opened("libnccl.so.2", False, "missing", "distribute.strategy: mirrored")],
     "the driver lists no usable GPU (`nvidia-smi` shows what it sees)"),
]  # fmt: skip


@pytest.mark.parametrize(("driver", "failed", "says"), CAUSES)
def test_no_gpu_is_explained_by_its_likeliest_cause(driver, failed, says):
    assert no_gpu_cause(driver, failed, "12") == says


def test_asking_for_a_gpu_where_there_is_none_is_refused_in_one_line():
    if driver_cuda_version():
        pytest.skip(NO_DRIVER)
    with pytest.raises(StageError) as refused:
        use_devices("gpu")
    assert str(refused.value) == (
        "train.device is gpu, but TensorFlow sees no GPU: no NVIDIA driver (libcuda.so.1 not "
        "found; a container needs `docker run --gpus all`)"
    )


@pytest.mark.parametrize("choice", ["auto", "cpu"])
def test_without_a_gpu_auto_and_cpu_train_on_the_cpu_without_a_word(choice):
    if driver_cuda_version():
        pytest.skip(NO_DRIVER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no driver: nothing to warn about
        assert use_devices(choice) == ["CPU:0"]


def site_packages_nvidia() -> Path:
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the CUDA layer is not installed here (`make gpu-check` installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [None, "cudnn", "cusolver"])
def test_gpu_check_passes_and_fails_naming_a_hidden_library(hidden):
    """cuDNN is on TensorFlow's own library path, cuSOLVER is opened from its wheel: a library
    hidden either way fails the check, by name. Hidden for real: an empty directory is mounted
    over the wheel's, in a mount namespace of the check's own."""
    nvidia = site_packages_nvidia()
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    check = f"{sys.executable} -m trainstyles.pipeline.gpu"
    if hidden:
        check = f"mount -t tmpfs none {nvidia / hidden / 'lib'} && {check}"
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", check]
    environment = os.environ | {"PYTHONPATH": str(REPO / "src")}  # this checkout's code
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=environment, check=False
    )
    lines = result.stdout.splitlines()
    if hidden is None:
        assert result.returncode == 0, result.stderr
        assert lines[-1].startswith("gpu-check: the CUDA 12 layer loads from its wheels; ")
        assert sum(" ok: " in line for line in lines) == len(LIBRARIES) + 2  # + ptxas, cache
        return
    assert result.returncode == 1
    name = f"lib{hidden}.so."
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and name in failed[0] and "is missing from nvidia-" in failed[0]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("gpu-check: error: 1 of ") and name in error


def test_a_tensorflow_built_without_cuda_is_the_cause_where_a_driver_is_present(monkeypatch):
    """A driver with a CPU-only TensorFlow (outside Linux x86-64's wheels): `auto` trains on the
    CPU and says why, `gpu` is refused with the same cause."""
    if driver_cuda_version():
        pytest.skip(NO_DRIVER)
    monkeypatch.setattr(gpu, "driver_cuda_version", lambda: (12, 4))
    monkeypatch.setattr(gpu, "cuda_build", lambda: False)
    cause = f"TensorFlow {tf.__version__} is not built with CUDA"
    with pytest.warns(StageWarning) as warned:
        assert use_devices("auto") == ["CPU:0"]
    assert [str(w.message) for w in warned] == [
        f"an NVIDIA driver is present, but TensorFlow sees no GPU and trained on the CPU: {cause}"
    ]
    with pytest.raises(
        StageError, match=f"^train.device is gpu, but TensorFlow sees no GPU: {cause}$"
    ):
        use_devices("gpu")
