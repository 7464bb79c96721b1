"""`make gpu-check`: GPU readiness, with or without a GPU. TensorFlow's CUDA build; each CUDA
library it opens (from the CUDA layer's wheel, at the major version of its build); XLA's ptxas;
where the driver keeps the GPU code it compiles, and whether that is kept; the driver; and per
GPU, whether the build has machine code for it or compiles its PTX at first start. One line per
check; exits 1 naming each check that failed:

    python -m trainstyles.tools.gpu_check
"""

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import tensorflow as tf

from trainstyles import StageError
from trainstyles.pipeline.gpu import (
    ANY_GPU,
    DRIVER,
    SETUP,
    Opened,
    build_majors,
    described,
    driver_cuda_version,
    keep_cuda_cache,
    no_gpu_cause,
    open_libraries,
    wheel_file,
    writable,
)
from trainstyles.pipeline.stage import run_stage

OVERLAYS = {"overlay", "fuse.fuse-overlayfs"}  # a container's own root, Docker's and Podman's


def mounts() -> dict[Path, str]:
    """Each mount point of this process and its filesystem type, the later mount on top."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, filesystem = line.partition(" - ")
        point = re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal[1], 8)), fields.split()[4])
        found[Path(point)] = filesystem.split()[0]
    return found


def cache_lost_because(cache: Path, mounted: dict[Path, str]) -> str | None:
    """Why the code compiled into `cache` is lost after this run, or None where it is kept."""
    # In a chroot no mount may hold the cache: its filesystem is then unknown, not lost.
    point = max(
        (p for p in mounted if p == cache or p in cache.parents),
        key=lambda p: len(p.parts),
        default=None,
    )
    if mounted.get(point) == "tmpfs":
        return "on a tmpfs, emptied at every boot"
    if point == Path("/") and mounted[point] in OVERLAYS:
        return "in the container's own filesystem, which `docker run --rm` removes"
    if Path("/tmp") in cache.parents:
        return "under /tmp, which the system empties"
    return None


def cache_check(cache: Path) -> Opened:
    """Where the driver keeps the GPU code it compiles, whether it is kept, and its cap."""
    if not writable(cache):
        return Opened(
            "CUDA cache", False, f"{cache} is not writable: each start compiles again", "speed"
        )
    lost = cache_lost_because(cache.resolve(), mounts())
    kept = f"not kept: {lost}" if lost else "kept between runs"
    size = os.environ.get("CUDA_CACHE_MAXSIZE", "")
    cap = f"{int(size) / 2**30:g} GiB" if size.isdigit() else repr(size)
    return Opened("CUDA cache", True, f"{cache}, {kept}; up to {cap} (CUDA_CACHE_MAXSIZE)", "speed")


TARGET = re.compile(r"(sm|compute)_(\d+)(\d)")  # sm_89: machine code for 8.9; compute_90: PTX


def kernel_code(capability: tuple[int, int], targets: list[str]) -> str | None:
    """Which of the build's `targets` a GPU of `capability` runs TensorFlow's kernels from, or
    None. Machine code (sm_XY) runs on the same major version at a minor of Y or newer (sm_80 on
    8.6, never on 9.0), and is preferred; PTX (compute_XY) is compiled by the driver for any
    capability of X.Y or newer."""
    machine, ptx = [], []
    for target in targets:
        if found := TARGET.fullmatch(target):
            kind, built = found[1], (int(found[2]), int(found[3]))
            if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
                machine.append((built, target))
            elif kind == "compute" and built <= capability:
                ptx.append((built, target))
    return max(machine or ptx, default=(None, None))[1]


def gpu_code_check(
    name: str, details: dict, build: dict, driver: tuple[int, int], cache: Path
) -> Opened:
    """What one GPU runs TensorFlow's kernels from, as gpu-check says it: `details` are
    TensorFlow's (get_device_details), `build` its build info, `driver` the CUDA version the
    driver supports, `cache` where the driver keeps the code it compiles."""
    targets = list(build["cuda_compute_capabilities"])
    gpu, code = described(details), kernel_code(tuple(details["compute_capability"]), targets)
    if code is None:
        said = f"{gpu}: older than any code in the build ({' '.join(targets)})"
        return Opened(name, False, said, ANY_GPU)
    if code.startswith("sm_"):
        return Opened(name, True, f"{gpu}: the build's machine code for {code}", "speed")
    ptx = f"{gpu}: no machine code for it in the build, only PTX ({code}),"
    # A driver compiles only the PTX of a CUDA release no newer than its own.
    wrote = tuple(int(part) for part in build["cuda_version"].split(".")[:2])
    if driver < wrote:
        said = (
            f"{ptx} which a driver for CUDA {driver[0]}.{driver[1]} cannot compile: it was "
            f"written by CUDA {wrote[0]}.{wrote[1]}; update the NVIDIA driver"
        )
        return Opened(name, False, said, ANY_GPU)
    said = f"{ptx} which the driver compiles at first start, into {cache}"
    return Opened(name, True, said, "speed")


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


def driver_check(driver: tuple[int, int] | None, gpus: int, cuda_major: str) -> Opened:
    if driver is None:
        return Opened(
            "driver", True, f"none ({DRIVER} not found): TensorFlow trains on the CPU", ANY_GPU
        )
    if not gpus:
        cause = no_gpu_cause(driver, [], cuda_major)
        return Opened("driver", False, f"TensorFlow sees no GPU: {cause}", ANY_GPU)
    said = f"supports CUDA {driver[0]}.{driver[1]}; TensorFlow sees {gpus} GPU(s)"
    return Opened("driver", True, said, ANY_GPU)


def main() -> str:
    majors = build_majors()
    build = tf.sysconfig.get_build_info()
    targets = list(build.get("cuda_compute_capabilities", []))
    print(
        f"TensorFlow {tf.__version__} is built with CUDA {build['cuda_version']} and cuDNN "
        f"{build['cudnn_version']}, for {' '.join(targets)}"
    )
    cache = keep_cuda_cache()  # as a stage does, before CUDA starts
    checked = [*open_libraries(), ptxas(), cache_check(cache)]
    driver = driver_cuda_version()
    gpus = tf.config.list_physical_devices("GPU") if driver else []
    checked.append(driver_check(driver, len(gpus), majors["cuda"]))
    for index, gpu in enumerate(gpus):
        details = tf.config.experimental.get_device_details(gpu)
        checked.append(gpu_code_check(f"GPU:{index}", details, build, driver, cache))
    for opened in checked:
        print(f"  {opened.soname:<20} {'ok' if opened.ok else 'FAILED'}: {opened.said}")
    failed = [opened for opened in checked if not opened.ok]
    if failed:
        raise StageError(
            f"{len(failed)} of {len(checked)} checks failed: "
            + "; ".join(f"{opened.soname}: {opened.said}" for opened in failed)
        )
    where = f"{len(gpus)} GPU(s) visible" if gpus else "no driver here, so no GPU to train on"
    return f"the CUDA {majors['cuda']} layer loads from its wheels; {where}"


if __name__ == "__main__":
    run_stage(main, name="gpu-check")
