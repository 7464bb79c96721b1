"""The GPU side of a run: TensorFlow's CUDA libraries, the driver, and the devices that train.

TensorFlow's Linux wheel is built with CUDA but carries none of it: the CUDA user space comes
from NVIDIA's wheels (requirements-cuda.txt, tensorflow[and-cuda]'s, pinned), the driver from the
host. At its first GPU query TensorFlow opens each library by name from libtensorflow_framework,
whose RUNPATH lists most of the wheels' directories but not cuSOLVER's, and one library it cannot
open turns every GPU off, in a log line that is easy to miss. So where a driver is present, each
library is first opened here through TensorFlow's own loader, and one that its path misses is
opened from its wheel by full path: the loader's later open by name finds it already loaded.

`make gpu-check` does the same without a GPU, and says per library where it came from:

    python -m trainstyles.pipeline.gpu
"""

import ctypes
import importlib.metadata
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

# TensorFlow's loader (tsl's, in libtensorflow_framework): a name it opens resolves exactly as
# TensorFlow's opening of its CUDA libraries does. The public tf.load_library takes only paths.
from tensorflow.python.client.pywrap_tf_session import TF_LoadLibrary

from trainstyles import StageError, StageWarning
from trainstyles.pipeline.stage import run_stage

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
    """How one library opened: `ok`, and what to tell a person about it."""

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


def use_devices(choice: str) -> list[str]:
    """Make TensorFlow train on what `train.device` asks for (auto, cpu, gpu), before its
    runtime starts, and name the devices it will use. `gpu` where none is visible is refused;
    `auto` where a driver is present but no GPU is visible warns, with the likely cause."""
    driver, built = driver_cuda_version(), cuda_build()
    failed = [opened for opened in open_libraries() if not opened.ok] if driver and built else []
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
    details = tf.config.experimental.get_device_details(gpu)
    capability = ".".join(map(str, details.get("compute_capability", ())))
    return f"GPU:{index} ({details.get('device_name', 'a GPU')}, compute capability {capability})"


def ptxas() -> Opened:
    """XLA's PTX assembler (for `train.jit_compile` on a GPU), which TensorFlow looks for in the
    nvidia-cuda-nvcc wheel beside it."""
    cuda = build_majors()["cuda"]
    wheel = f"nvidia-cuda-nvcc-cu{cuda}"
    try:
        version = importlib.metadata.version(wheel)
    except importlib.metadata.PackageNotFoundError:
        return Opened("ptxas", False, f"{wheel} is not installed (the CUDA layer: {SETUP})", "XLA")
    tool = wheel_file(wheel, "ptxas")
    if tool is None or not os.access(tool, os.X_OK):
        return Opened("ptxas", False, f"{wheel} {version} has no runnable ptxas", "XLA")
    said = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    release = said.stdout.rsplit("release ", 1)[-1].split(",")[0]
    if said.returncode or not release.startswith(f"{cuda}."):
        return Opened("ptxas", False, f"{tool} is not CUDA {cuda}'s: {said.stdout[-80:]}", "XLA")
    return Opened("ptxas", True, f"{wheel} {version} (CUDA {release})", "XLA")


def cache_line() -> Opened:
    """The driver caches the GPU code it compiles from PTX in CUDA_CACHE_PATH (~/.nv by
    default): where it cannot write, every start compiles again."""
    cache = Path(os.environ.get("CUDA_CACHE_PATH") or Path.home() / ".nv" / "ComputeCache")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        ok = os.access(cache, os.W_OK)
    except OSError:
        ok = False
    return Opened("CUDA cache", ok, f"{cache} is {'' if ok else 'not '}writable", "speed")


def main() -> str:
    majors = build_majors()
    build = tf.sysconfig.get_build_info()
    print(
        f"TensorFlow {tf.__version__} is built with CUDA {build['cuda_version']} and cuDNN "
        f"{build['cudnn_version']}, for {' '.join(build.get('cuda_compute_capabilities', []))}"
    )
    checked = [*open_libraries(), ptxas(), cache_line()]
    for opened in checked:
        print(f"  {opened.soname:<20} {'ok' if opened.ok else 'FAILED'}: {opened.said}")
    driver = driver_cuda_version()
    gpus = tf.config.list_physical_devices("GPU") if driver else []
    names = [gpu_name(index, gpu) for index, gpu in enumerate(gpus)]
    if driver:
        print(f"  {'driver':<20} supports CUDA {driver[0]}.{driver[1]}; GPUs: {names or 'none'}")
    else:
        print(f"  {'driver':<20} none ({DRIVER} not found): TensorFlow trains on the CPU")
    failed = [opened for opened in checked if not opened.ok]
    if failed:
        raise StageError(
            f"{len(failed)} of {len(checked)} checks failed: "
            + "; ".join(f"{opened.soname}: {opened.said}" for opened in failed)
        )
    if driver and not names:
        raise StageError(f"TensorFlow sees no GPU: {no_gpu_cause(driver, [], majors['cuda'])}")
    where = f"{len(names)} GPU(s) visible" if names else "no driver here, so no GPU to train on"
    return f"the CUDA {majors['cuda']} layer loads from its wheels; {where}"


if __name__ == "__main__":
    run_stage(main, name="gpu-check")
