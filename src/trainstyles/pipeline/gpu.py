"""The GPU side of a run: TensorFlow's CUDA libraries, the driver, and the devices that train.

TensorFlow's Linux wheel is built with CUDA but carries none of it: the CUDA user space comes
from NVIDIA's wheels (requirements-cuda.txt, tensorflow[and-cuda]'s, pinned), the driver from the
host. At its first GPU query TensorFlow opens each library by name from libtensorflow_framework,
whose RUNPATH lists most of the wheels' directories but not cuSOLVER's, and one library it cannot
open turns every GPU off, in a log line that is easy to miss. So where a driver is present, each
library is first opened here through TensorFlow's own loader, and one that its path misses is
opened from its wheel by full path: the loader's later open by name finds it already loaded.

`make gpu-check` (trainstyles.tools.gpu_check) does the same without a GPU, and says per library
where it came from, where the driver keeps the GPU code it compiles, and per GPU whether the build
has machine code for it.
"""

import contextlib
import ctypes
import importlib.metadata
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

# TensorFlow's loader (tsl's, in libtensorflow_framework): a name it opens resolves exactly as
# TensorFlow's opening of its CUDA libraries does. The public tf.load_library takes only paths.
from tensorflow.python.client.pywrap_tf_session import TF_LoadLibrary

from trainstyles import StageError, StageWarning

DRIVER = "libcuda.so.1"
SETUP = "make setup CUDA=1"  # installs the CUDA layer (Makefile)


@dataclass(frozen=True)
class CudaLibrary:
    """One library TensorFlow opens, `lib<name>.so.<major>`, and the NVIDIA wheel that ships it."""

    name: str
    wheel: str  # {cuda}: the CUDA major that TensorFlow was built with
    # "cuda" or "cudnn": the major version that TensorFlow's build info names; otherwise the
    # library's own soname version within that CUDA release.
    major: str
    needed_for: str


ANY_GPU = "any GPU"  # TensorFlow turns every GPU off when one of these does not open
LIBRARIES = (
    CudaLibrary("cudart", "nvidia-cuda-runtime-cu{cuda}", "cuda", ANY_GPU),
    CudaLibrary("cublas", "nvidia-cublas-cu{cuda}", "cuda", ANY_GPU),
    CudaLibrary("cublasLt", "nvidia-cublas-cu{cuda}", "cuda", ANY_GPU),
    CudaLibrary("cufft", "nvidia-cufft-cu{cuda}", "11", ANY_GPU),
    CudaLibrary("cusolver", "nvidia-cusolver-cu{cuda}", "11", ANY_GPU),
    CudaLibrary("cusparse", "nvidia-cusparse-cu{cuda}", "cuda", ANY_GPU),
    CudaLibrary("cudnn", "nvidia-cudnn-cu{cuda}", "cudnn", ANY_GPU),
    CudaLibrary("nvJitLink", "nvidia-nvjitlink-cu{cuda}", "cuda", "cuFFT, cuSPARSE, cuSOLVER"),
    CudaLibrary("nccl", "nvidia-nccl-cu{cuda}", "2", "distribute.strategy: mirrored"),
    CudaLibrary("cupti", "nvidia-cuda-cupti-cu{cuda}", "cuda", "profiling"),
)


@dataclass(frozen=True)
class Opened:
    """How one check went (a library opened, the cache, the driver, a GPU): `ok`, and what to
    tell a person about it."""

    soname: str
    ok: bool
    said: str
    needed_for: str


def cuda_build() -> bool:
    """Whether this TensorFlow is built with CUDA (Linux x86-64's wheels are; others may not be)."""
    return bool(tf.sysconfig.get_build_info().get("is_cuda_build"))


def build_majors() -> dict[str, str]:
    """The CUDA and cuDNN major versions in TensorFlow's build info."""
    if not cuda_build():
        raise StageError(f"TensorFlow {tf.__version__} is not built with CUDA: no GPU can train")
    build = tf.sysconfig.get_build_info()
    return {key: str(build[f"{key}_version"]).split(".")[0] for key in ("cuda", "cudnn")}


def soname(library: CudaLibrary, majors: dict[str, str]) -> str:
    return f"lib{library.name}.so.{majors.get(library.major, library.major)}"


def wheel_file(wheel: str, name: str) -> Path | None:
    """Where the installed wheel `wheel` put its file `name`, per its own record."""
    for file in importlib.metadata.files(wheel) or []:
        if file.name == name:
            return Path(file.locate()).absolute()
    return None


def mapped_files() -> set[Path]:
    """The files this process has mapped, as the kernel names them: the libraries it loaded."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {Path(fields[5]) for line in lines if len(fields := line.split(maxsplit=5)) == 6}


def open_library(library: CudaLibrary, majors: dict[str, str]) -> Opened:
    """Open one library as TensorFlow will, from its wheel where TensorFlow's path misses it,
    and check that what opened is the wheel's file, at the major version the build names."""
    name = soname(library, majors)

    def result(ok: bool, said: str) -> Opened:
        return Opened(name, ok, said, library.needed_for)

    wheel = library.wheel.format(cuda=majors["cuda"])
    try:
        version = importlib.metadata.version(wheel)
    except importlib.metadata.PackageNotFoundError:
        return result(False, f"{wheel} is not installed (the CUDA layer: {SETUP})")
    file = wheel_file(wheel, name)
    if file is None:
        return result(False, f"{wheel} {version} ships no {name}: another major version")
    if not file.is_file():
        return result(False, f"{file} is missing from {wheel} {version}")
    registered = ""
    try:
        TF_LoadLibrary(name)
    except tf.errors.NotFoundError:
        try:
            ctypes.CDLL(str(file), mode=ctypes.RTLD_GLOBAL)
            TF_LoadLibrary(name)
        except (OSError, tf.errors.OpError) as error:
            return result(False, f"{file} does not load: {' '.join(str(error).split())}")
        registered = ", opened from the wheel (not on TensorFlow's library path)"
    loaded = [path for path in mapped_files() if path.name.startswith(f"lib{library.name}.so")]
    if file.resolve() not in loaded:
        elsewhere = ", ".join(map(str, loaded)) or "an unknown file"
        return result(
            False, f"loaded {elsewhere}, not {wheel} {version}'s: LD_LIBRARY_PATH or ldconfig "
            "puts another CUDA first",
        )  # fmt: skip
    return result(True, f"{wheel} {version}{registered}")


def open_libraries() -> list[Opened]:
    """Every library of LIBRARIES, opened as `open_library` does."""
    majors = build_majors()
    return [open_library(library, majors) for library in LIBRARIES]


def driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the NVIDIA driver supports; None where there is no driver."""
    try:
        cuda = ctypes.CDLL(DRIVER)
    except OSError:
        return None
    version = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value // 1000, version.value % 1000 // 10


def no_gpu_cause(driver: tuple[int, int] | None, failed: list[Opened], cuda_major: str) -> str:
    """The likeliest reason that TensorFlow sees no GPU, as a person would fix it."""
    if driver is None:
        return f"no NVIDIA driver ({DRIVER} not found; a container needs `docker run --gpus all`)"
    if driver[0] < int(cuda_major):
        return (
            f"the driver supports CUDA {driver[0]}.{driver[1]}, older than the CUDA {cuda_major} "
            "TensorFlow is built with: update the NVIDIA driver"
        )
    if needed := [opened for opened in failed if opened.needed_for == ANY_GPU]:
        return "; ".join(f"{opened.soname}: {opened.said}" for opened in needed)
    return "the driver lists no usable GPU (`nvidia-smi` shows what it sees)"


# TensorFlow's first device query calls cuInit. With the CUDA layer installed and no driver, the
# call fails (303: TensorFlow's stand-in for libcuda.so.1 finds no driver to load) and TensorFlow
# logs it as an error at every start. Without a driver there is no GPU to lose, and the stage
# says which device it trained on: the line tells nobody anything. With a driver it is kept.
CUINIT_FAILED = b"failed call to cuInit"


@contextlib.contextmanager
def stderr_without(fragment: bytes) -> Iterator[None]:
    """Hold what reaches file descriptor 2 (C++ logs too) while the block runs, then pass it on
    in order, less the lines that hold `fragment`."""
    sys.stderr.flush()
    original = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(original, 2)
            os.close(original)
            held.seek(0)
            os.write(2, b"".join(line for line in held if fragment not in line))


def use_devices(choice: str) -> list[str]:
    """Make TensorFlow train on what `train.device` asks for (auto, cpu, gpu), before its
    runtime starts, and name the devices it will use. `gpu` where none is visible is refused;
    `auto` where a driver is present but no GPU is visible warns, with the likely cause."""
    driver, built = driver_cuda_version(), cuda_build()
    if driver:
        keep_cuda_cache()  # before CUDA starts, at the first device query below
    failed = [opened for opened in open_libraries() if not opened.ok] if driver and built else []
    if not driver:
        with stderr_without(CUINIT_FAILED):
            tf.config.list_physical_devices("GPU")
    if choice == "cpu":
        tf.config.set_visible_devices([], "GPU")
    visible = tf.config.get_visible_devices("GPU")
    for gpu in visible:  # so that TensorFlow does not reserve all of their memory up front
        tf.config.experimental.set_memory_growth(gpu, True)
    if not visible and choice != "cpu":
        if built:
            cause = no_gpu_cause(driver, failed, build_majors()["cuda"])
        else:
            cause = f"TensorFlow {tf.__version__} is not built with CUDA"
        if choice == "gpu":
            raise StageError(f"train.device is gpu, but TensorFlow sees no GPU: {cause}")
        if driver:
            warnings.warn(
                f"an NVIDIA driver is present, but TensorFlow sees no GPU and trained on the "
                f"CPU: {cause}",
                StageWarning,
                stacklevel=2,
            )
    elif visible and failed:
        said = "; ".join(f"{each.soname} ({each.needed_for}): {each.said}" for each in failed)
        warnings.warn(f"a GPU trains, but {said}", StageWarning, stacklevel=2)
    return [gpu_name(index, gpu) for index, gpu in enumerate(visible)] or ["CPU:0"]


def gpu_name(index: int, gpu: tf.config.PhysicalDevice) -> str:
    return f"GPU:{index} ({described(tf.config.experimental.get_device_details(gpu))})"


def described(details: dict) -> str:
    """A GPU as TensorFlow's device details name it: its model and compute capability."""
    capability = ".".join(map(str, details.get("compute_capability", ())))
    return f"{details.get('device_name', 'a GPU')}, compute capability {capability}"


# The driver's cache of the GPU code it compiles from PTX: a GPU newer than the build's machine
# code compiles TensorFlow's kernels at first use, and again at every start that finds no cache.
IMAGE_CUDA_CACHE = Path("/tmp/cuda-cache")  # the Dockerfile's, where the workspace is read-only
WORKSPACE_CUDA_CACHE = Path(".cache/cuda")  # in the checkout; git, DVC and docker ignore it
# TensorFlow's kernels, compiled from PTX, can outgrow the driver's default cap, and the driver
# evicts the oldest code for the next start to compile again: the largest cap the driver takes.
CUDA_CACHE_MAXSIZE = str(4 * 2**30)


def chosen_cuda_cache(set_to: str | None, workspace: Path | None) -> Path:
    """Where the driver keeps the code it compiles: where CUDA_CACHE_PATH says, unless it is
    unset or the image's default (lost with `docker run --rm`); then in the `workspace`, which a
    later run mounts again (None: none this process can write); else where it was."""
    if set_to and Path(set_to) != IMAGE_CUDA_CACHE:
        return Path(set_to)
    if workspace is not None:
        return workspace / WORKSPACE_CUDA_CACHE
    return Path(set_to) if set_to else Path.home() / ".nv" / "ComputeCache"  # the driver's own


def writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def keep_cuda_cache() -> Path:
    """Point the driver's cache where `chosen_cuda_cache` says, sized by CUDA_CACHE_MAXSIZE. The
    driver reads both when CUDA starts: call this before TensorFlow's first device query. The
    workspace is the DVC project that the stages run in, where it is writable."""
    workspace = Path.cwd()
    if not (workspace / "dvc.yaml").is_file() or not writable(workspace / WORKSPACE_CUDA_CACHE):
        workspace = None
    cache = chosen_cuda_cache(os.environ.get("CUDA_CACHE_PATH"), workspace)
    os.environ["CUDA_CACHE_PATH"] = str(cache)
    os.environ.setdefault("CUDA_CACHE_MAXSIZE", CUDA_CACHE_MAXSIZE)
    return cache
