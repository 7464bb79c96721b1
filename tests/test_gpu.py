"""GPU readiness without a GPU: the pinned CUDA layer, each library TensorFlow opens, the device
choice, and the causes a stage gives when TensorFlow sees no GPU."""

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import tensorflow as tf
from packaging.requirements import Requirement

from conftest import REPO, copy_run, stage_argv
from trainstyles import StageError, StageWarning
from trainstyles.pipeline import gpu
from trainstyles.pipeline.gpu import (
    ANY_GPU,
    CUDA_CACHE_MAXSIZE,
    CUINIT_FAILED,
    IMAGE_CUDA_CACHE,
    LIBRARIES,
    WORKSPACE_CUDA_CACHE,
    Opened,
    build_majors,
    chosen_cuda_cache,
    driver_cuda_version,
    keep_cuda_cache,
    no_gpu_cause,
    soname,
    stderr_without,
    use_devices,
    wheel_file,
)
from trainstyles.tools.gpu_check import (
    cache_check,
    cache_lost_because,
    driver_check,
    gpu_code_check,
    kernel_code,
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


def gpu_check(hide=(), env: dict | None = None) -> subprocess.CompletedProcess:
    """`make gpu-check`'s command with this checkout's code, in a mount namespace of its own
    where each directory of `hide` is hidden for real, under an empty one mounted over it."""
    site_packages_nvidia()
    if driver_cuda_version():
        pytest.skip(NO_DRIVER)
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    mounts = "".join(f"mount -t tmpfs none {shlex.quote(str(path))} && " for path in hide)
    check = f"{mounts}{shlex.quote(sys.executable)} -m trainstyles.tools.gpu_check"
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", check]
    environment = os.environ | {"PYTHONPATH": str(REPO / "src")} | (env or {})
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=environment, check=False
    )


def verdicts(stdout: str) -> dict[str, str]:
    """Each check gpu-check printed, `  <name, 20 wide> ok|FAILED: …`, and its verdict."""
    lines = [line for line in stdout.splitlines() if line.startswith("  ")]
    return {line[2:22].strip(): line[23:].split(":")[0] for line in lines}


def failed_lines(stdout: str) -> dict[str, str]:
    found = [line[2:].split(" FAILED: ", 1) for line in stdout.splitlines() if " FAILED: " in line]
    return {name.strip(): said for name, said in found}


def stub_library(directory: Path, name: str, source: str) -> Path:
    """A shared library of soname `name`, built from C `source` into `directory`: what the
    dynamic loader finds first by that name when `directory` leads LD_LIBRARY_PATH."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is missing: no stand-in library can be built")
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.c").write_text(source)
    command = ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", name, f"{name}.c"]
    subprocess.run(command, cwd=directory, check=True)
    return directory / name


@pytest.fixture(scope="module")
def gpu_check_as_installed() -> subprocess.CompletedProcess:
    """gpu-check here, with nothing hidden: the control of every check below it."""
    return gpu_check()


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [None, "cudnn", "cusolver"])
def test_gpu_check_passes_and_fails_naming_a_hidden_library(hidden, gpu_check_as_installed):
    """cuDNN is on TensorFlow's own library path, cuSOLVER is opened from its wheel: a library
    hidden either way fails the check, by name."""
    if hidden is None:
        result = gpu_check_as_installed
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1].startswith("gpu-check: the CUDA 12 layer loads from its wheels; ")
        checks = [soname(library, build_majors()) for library in LIBRARIES]
        checks += ["ptxas", "CUDA cache", "driver"]
        assert verdicts(result.stdout) == dict.fromkeys(checks, "ok")
        return
    result = gpu_check(hide=[site_packages_nvidia() / hidden / "lib"])
    assert result.returncode == 1
    [(name, said)] = failed_lines(result.stdout).items()
    assert name.startswith(f"lib{hidden}.so.") and "is missing from nvidia-" in said
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("gpu-check: error: 1 of ") and name in error


def shown_on_the_page() -> str:
    """What docs/gpu.md shows `make gpu-check` printing: the text block after the one it runs."""
    page = (REPO / "docs" / "gpu.md").read_text()
    shown = re.search(r"\n *make gpu-check\n *```\n.*?```text\n(.*?)\n *```\n", page, re.DOTALL)
    return textwrap.dedent(shown[1]) + "\n"


@pytest.mark.slow
def test_docs_gpu_md_shows_what_gpu_check_prints_here(gpu_check_as_installed):
    """The page's output is this machine's, from a checkout elsewhere: the same lines, but for
    the checkout's path, and whether its cache is kept, in the CUDA cache line."""

    def checkout_aside(text: str) -> str:
        return re.sub(r"\S+/\.cache/cuda, (kept between runs|not kept: [^;]+)", "CACHE", text)

    assert checkout_aside(shown_on_the_page()) == checkout_aside(gpu_check_as_installed.stdout)


@pytest.mark.slow
def test_gpu_check_names_another_library_first_on_ld_library_path(tmp_path):
    """A file of libcudart's soname that is not the wheel's, first on LD_LIBRARY_PATH, is what
    TensorFlow would load: the check of the file that loaded names it."""
    stub = stub_library(tmp_path / "other-cuda", "libcudart.so.12", "int other_cuda;\n")
    result = gpu_check(env={"LD_LIBRARY_PATH": str(stub.parent)})
    assert result.returncode == 1
    assert failed_lines(result.stdout) == {
        "libcudart.so.12": f"loaded {stub}, not nvidia-cuda-runtime-cu12 "
        f"{importlib.metadata.version('nvidia-cuda-runtime-cu12')}'s: LD_LIBRARY_PATH or "
        "ldconfig puts another CUDA first"
    }
    assert "libcudart.so.12: loaded " in result.stderr.strip().splitlines()[-1]


OLD_DRIVER = """
int cuDriverGetVersion(int *version) { *version = 11080; return 0; }
int cuInit(unsigned int flags) { return 100; } /* CUDA_ERROR_NO_DEVICE */
"""


@pytest.mark.slow
def test_every_check_gpu_check_prints_fails_by_name_once_broken(tmp_path, gpu_check_as_installed):
    """Each library's and ptxas' wheel directory hidden, a cache path it cannot create, and a
    driver (a stand-in) too old for TensorFlow's CUDA: every line gpu-check prints fails, each
    for its own reason, where the same check with nothing broken passes every one."""
    majors = build_majors()
    wheels = {
        soname(library, majors): wheel_file(
            library.wheel.format(cuda="12"), soname(library, majors)
        )
        for library in LIBRARIES
    }
    ptxas = wheel_file("nvidia-cuda-nvcc-cu12", "ptxas")
    hide = {file.parent for file in [*wheels.values(), ptxas]}
    driver = stub_library(tmp_path / "driver", "libcuda.so.1", OLD_DRIVER)
    (tmp_path / "a file").touch()
    result = gpu_check(
        hide=sorted(hide),
        env={
            "LD_LIBRARY_PATH": str(driver.parent),
            "CUDA_CACHE_PATH": str(tmp_path / "a file" / "cache"),
        },
    )
    assert result.returncode == 1
    failed = failed_lines(result.stdout)
    assert set(failed) == set(verdicts(gpu_check_as_installed.stdout))
    for name, file in wheels.items():
        assert failed[name].startswith(f"{file} is missing from nvidia-"), failed[name]
    assert failed["ptxas"].endswith(" has no runnable ptxas")
    assert (
        failed["CUDA cache"]
        == f"{tmp_path / 'a file' / 'cache'} is not writable: each start compiles again"
    )
    assert failed["driver"] == (
        "TensorFlow sees no GPU: the driver supports CUDA 11.8, older than the CUDA 12 "
        "TensorFlow is built with: update the NVIDIA driver"
    )
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"gpu-check: error: {len(failed)} of {len(failed)} checks failed: ")


def test_a_tensorflow_built_without_cuda_is_the_cause_where_a_driver_is_present(
    monkeypatch, cuda_cache_unset
):
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


@pytest.mark.slow
def test_with_the_cuda_layer_and_no_driver_a_stage_prints_no_cuinit_error(small_run, tmp_path):
    """The CUDA layer installed, no driver: a trainer says nothing of CUDA, and its machine
    record says it trained on the CPU. The control: TensorFlow's own first device query, in the
    same environment, logs the failed cuInit."""
    site_packages_nvidia()
    if driver_cuda_version():
        pytest.skip(NO_DRIVER)
    repo = copy_run(small_run, tmp_path / "repo")
    (repo / "metrics" / "machine" / "train_fit.json").unlink()
    query = "import tensorflow as tf; tf.config.list_physical_devices('GPU')"
    bare = subprocess.Popen(
        [sys.executable, "-c", query], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    stage = subprocess.run(
        [sys.executable, *stage_argv("train_fit", repo)], cwd=repo, capture_output=True,
        env=os.environ | {"PYTHONPATH": str(repo / "src")}, text=True, check=False,
    )  # fmt: skip
    assert stage.returncode == 0, stage.stderr
    assert not re.search("cuInit|CUDA error|cuda_", stage.stdout + stage.stderr), stage.stderr
    record = json.loads((repo / "metrics" / "machine" / "train_fit.json").read_text())
    assert record["devices"] == ["CPU:0"]
    assert CUINIT_FAILED.decode() in bare.communicate()[1]


def test_only_the_lines_holding_the_fragment_are_dropped_from_file_descriptor_2(capfd):
    """What C++ writes to descriptor 2 and what Python writes to sys.stderr, in their order."""
    with stderr_without(CUINIT_FAILED):
        os.write(2, b"E cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n")
        print("said in Python", file=sys.stderr)
        os.write(2, b"E another error\n")
    assert capfd.readouterr().err == "said in Python\nE another error\n"


TARGETS = tf.sysconfig.get_build_info()["cuda_compute_capabilities"]
CAPABILITIES = [
    ((9, 0), "compute_90"),  # H100, H200: no machine code, PTX compiled at first start
    ((12, 0), "compute_90"),  # newer than anything built: PTX too
    ((8, 0), "sm_80"),  # A100
    ((8, 6), "sm_80"),  # machine code of the same major, an older minor
    ((8, 9), "sm_89"),
    ((7, 5), "sm_70"),
    ((5, 2), None),  # older than the oldest code built
]


@pytest.mark.parametrize(("capability", "code"), CAPABILITIES)
def test_a_gpu_runs_the_builds_machine_code_for_its_major_else_compiles_its_ptx(capability, code):
    assert TARGETS == ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]  # TensorFlow 2.21's
    assert kernel_code(capability, TARGETS) == code


def test_gpu_check_says_which_code_each_gpu_runs_and_where_compiled_code_is_kept():
    """Device details as TensorFlow gives them; a GPU that no code fits, or whose driver cannot
    compile the build's PTX, fails by name."""
    build, cache = tf.sysconfig.get_build_info(), Path("/workspace/.cache/cuda")
    assert build["cuda_version"] == "12.5.1"

    def check(name: str, capability: tuple[int, int], driver=(12, 8)) -> Opened:
        details = {"device_name": name, "compute_capability": capability}
        return gpu_code_check("GPU:0", details, build, driver, cache)

    assert check("NVIDIA H200", (9, 0)) == Opened(
        "GPU:0", True, "NVIDIA H200, compute capability 9.0: no machine code for it in the "
        f"build, only PTX (compute_90), which the driver compiles at first start, into {cache}",
        "speed",
    )  # fmt: skip
    assert check("NVIDIA H200", (9, 0), driver=(12, 4)) == Opened(
        "GPU:0", False, "NVIDIA H200, compute capability 9.0: no machine code for it in the "
        "build, only PTX (compute_90), which a driver for CUDA 12.4 cannot compile: it was "
        "written by CUDA 12.5; update the NVIDIA driver", ANY_GPU,
    )  # fmt: skip
    assert check("NVIDIA A100-SXM4-80GB", (8, 0), driver=(12, 4)) == Opened(
        "GPU:0", True, "NVIDIA A100-SXM4-80GB, compute capability 8.0: the build's machine "
        "code for sm_80", "speed",
    )  # fmt: skip
    assert check("Tesla M60", (5, 2)) == Opened(
        "GPU:0", False, "Tesla M60, compute capability 5.2: older than any code in the build "
        "(sm_60 sm_70 sm_80 sm_89 compute_90)", ANY_GPU,
    )  # fmt: skip


DRIVERS = [
    (None, 0, True, "none (libcuda.so.1 not found): TensorFlow trains on the CPU"),
    ((12, 4), 2, True, "supports CUDA 12.4; TensorFlow sees 2 GPU(s)"),
    ((12, 4), 0, False,
     "TensorFlow sees no GPU: the driver lists no usable GPU (`nvidia-smi` shows what it "
     "sees)"),
]  # fmt: skip


@pytest.mark.parametrize(("driver", "gpus", "ok", "said"), DRIVERS)
def test_the_driver_check_fails_where_a_driver_shows_tensorflow_no_gpu(driver, gpus, ok, said):
    assert driver_check(driver, gpus, "12") == Opened("driver", ok, said, ANY_GPU)


WORKSPACE = Path("/workspace")
CHOICES = [  # CUDA_CACHE_PATH, a workspace this process can write → the cache
    (None, WORKSPACE, WORKSPACE / ".cache/cuda"),
    (str(IMAGE_CUDA_CACHE), WORKSPACE, WORKSPACE / ".cache/cuda"),  # the image's, lost with --rm
    ("/data/cuda", WORKSPACE, Path("/data/cuda")),  # the user's choice
    (str(IMAGE_CUDA_CACHE), None, IMAGE_CUDA_CACHE),  # a read-only mount: the image's
    (None, None, Path.home() / ".nv" / "ComputeCache"),  # the driver's own default
]


@pytest.mark.parametrize(("set_to", "workspace", "cache"), CHOICES)
def test_the_cuda_cache_is_kept_in_the_workspace_unless_set_elsewhere(set_to, workspace, cache):
    assert chosen_cuda_cache(set_to, workspace) == cache


@pytest.fixture
def cuda_cache_unset(monkeypatch):
    """CUDA_CACHE_PATH and CUDA_CACHE_MAXSIZE unset, and put back as they were after the test,
    whatever the code under test sets."""
    for name in ("CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE"):
        monkeypatch.setenv(name, "recorded, to be put back")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("set_to", [None, str(IMAGE_CUDA_CACHE)])
def test_the_cuda_cache_goes_into_the_dvc_project_a_stage_runs_in(
    set_to, tmp_path, cuda_cache_unset
):
    """Set in the environment, where the driver reads it when CUDA starts."""
    cuda_cache_unset.chdir(tmp_path)
    if set_to:
        cuda_cache_unset.setenv("CUDA_CACHE_PATH", set_to)
    (tmp_path / "dvc.yaml").touch()
    assert keep_cuda_cache() == tmp_path / WORKSPACE_CUDA_CACHE
    assert (tmp_path / WORKSPACE_CUDA_CACHE).is_dir()
    assert os.environ["CUDA_CACHE_PATH"] == str(tmp_path / WORKSPACE_CUDA_CACHE)
    assert os.environ["CUDA_CACHE_MAXSIZE"] == CUDA_CACHE_MAXSIZE == str(4 * 2**30)


def test_outside_a_dvc_project_the_cuda_cache_and_its_size_stay_as_set(tmp_path, cuda_cache_unset):
    cuda_cache_unset.chdir(tmp_path)
    cuda_cache_unset.setenv("CUDA_CACHE_PATH", str(IMAGE_CUDA_CACHE))
    cuda_cache_unset.setenv("CUDA_CACHE_MAXSIZE", "1000000")
    assert keep_cuda_cache() == IMAGE_CUDA_CACHE
    assert os.environ["CUDA_CACHE_MAXSIZE"] == "1000000"
    assert not (tmp_path / WORKSPACE_CUDA_CACHE).exists()


def test_the_images_cuda_cache_is_the_one_gpu_py_knows_and_the_workspaces_is_ignored():
    assert f"CUDA_CACHE_PATH={IMAGE_CUDA_CACHE} " in (REPO / "Dockerfile").read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(WORKSPACE_CUDA_CACHE / "code")], cwd=REPO, check=False
    )
    assert ignored.returncode == 0
    for ignores in (".dockerignore", ".dvcignore"):
        lines = (REPO / ignores).read_text().splitlines()
        assert {".cache", ".cache/"} & set(lines), ignores


CONTAINER = {Path("/"): "overlay", Path("/workspace"): "ext4", Path("/dev/shm"): "tmpfs"}
HOST = {Path("/"): "ext4", Path("/run"): "tmpfs"}
CONTAINERS_OWN = "in the container's own filesystem, which `docker run --rm` removes"
KEPT = [  # the mounts, the cache → why it is lost, None where it is kept
    (CONTAINER, WORKSPACE / ".cache/cuda", None),  # the bind mount
    (CONTAINER, IMAGE_CUDA_CACHE, CONTAINERS_OWN),
    (CONTAINER, Path("/home/trainstyles/.nv/ComputeCache"), CONTAINERS_OWN),
    (HOST, Path("/home/me/trainstyles/.cache/cuda"), None),
    (HOST, Path("/home/me/.nv/ComputeCache"), None),
    (HOST, IMAGE_CUDA_CACHE, "under /tmp, which the system empties"),
    (HOST | {Path("/tmp"): "tmpfs"}, IMAGE_CUDA_CACHE, "on a tmpfs, emptied at every boot"),
    ({Path("/proc"): "proc"}, Path("/root/trainstyles/.cache/cuda"), None),  # a chroot's
]  # fmt: skip


@pytest.mark.parametrize(("mounted", "cache", "lost"), KEPT)
def test_the_cache_is_kept_unless_its_filesystem_goes_with_the_container_or_the_boot(
    mounted, cache, lost
):
    assert cache_lost_because(cache, mounted) == lost


def test_a_cuda_cache_that_cannot_be_written_fails_its_check_by_name(tmp_path, cuda_cache_unset):
    cuda_cache_unset.setenv("CUDA_CACHE_MAXSIZE", CUDA_CACHE_MAXSIZE)
    writable = cache_check(tmp_path / "cache")  # the control
    assert writable.ok and writable.said.endswith("; up to 4 GiB (CUDA_CACHE_MAXSIZE)")
    (tmp_path / "a file").touch()
    blocked = tmp_path / "a file" / "cache"
    assert cache_check(blocked) == Opened(
        "CUDA cache", False, f"{blocked} is not writable: each start compiles again", "speed"
    )
