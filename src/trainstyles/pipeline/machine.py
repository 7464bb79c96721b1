"""The machine a run trained on: what decides its bits besides the code, the params and the data.

Another CPU kind blocks and vectorises the same sums differently (oneDNN and Eigen pick their
kernels by instruction set and cache size), another thread split or a GPU adds them in another
order, and so the same seed trains other bits. Each trainer writes this fingerprint beside its
outputs, so that "the machine changed" can be told apart from "the change changed something".
It is read without TensorFlow, from the OS and the packages' metadata. Comparing and printing
fingerprints is the tools' part (tools/machines.py).
"""

import importlib.metadata
import importlib.util
import os
import runpy
import shutil
import subprocess
from pathlib import Path

# Instruction sets that change which kernels oneDNN and Eigen run, as /proc/cpuinfo names them.
KERNEL_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
PACKAGES = ("tensorflow", "keras", "numpy")
# Where the CPU is read from, /proc/cpuinfo unless this names another file: a test plays a kind
# of machine that no sweep record has by handing the trainers such a file.
CPUINFO_VARIABLE = "TRAINSTYLES_CPUINFO"


def fingerprint(intra_op_threads: int, devices: list[str] | None = None) -> dict:
    """What a run's bits depend on besides its inputs; nothing that differs from run to run.
    A trainer adds the `devices` it trained on, as TensorFlow named them (gpu.use_devices)."""
    machine = {
        "cpu": cpu(),
        "threads": {
            "intra_op": intra_op_threads,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        },
        "gpu": gpus(),
        "versions": {name: importlib.metadata.version(name) for name in PACKAGES},
    }
    return machine | ({"devices": devices} if devices is not None else {})


def cpu() -> dict:
    """The first processor's identity, kernel-relevant features and cache sizes."""
    fields: dict[str, str] = {}
    source = Path(os.environ.get(CPUINFO_VARIABLE) or "/proc/cpuinfo")
    for line in source.read_text().splitlines():
        if not line.strip():
            break  # the first processor only: the others are the same
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    caches = Path("/sys/devices/system/cpu/cpu0/cache")
    return {
        "model_name": fields.get("model name", "unknown"),
        "vendor": fields.get("vendor_id", "unknown"),
        "family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",
        "features": [feature for feature in KERNEL_FEATURES if feature in flags],
        "caches": {
            f"L{(index / 'level').read_text().strip()}{(index / 'type').read_text()[0].lower()}":
                (index / "size").read_text().strip()
            for index in sorted(caches.glob("index*"))
        },
    }  # fmt: skip


def gpus() -> list[dict]:
    """The NVIDIA GPUs TensorFlow can see, with the driver, and the CUDA and cuDNN it was built
    with; none where CUDA_VISIBLE_DEVICES hides them or no driver is installed."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible in ("", "-1") or not shutil.which("nvidia-smi"):
        return []
    query = ["nvidia-smi", "--query-gpu=index,name,driver_version", "--format=csv,noheader"]
    result = subprocess.run(query, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return []
    build = tensorflow_build()
    listed = [[part.strip() for part in line.split(",")] for line in result.stdout.splitlines()]
    return [
        {
            "name": name,
            "driver": driver,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
        }
        for index, name, driver in listed
        if visible is None or index in visible.split(",")
    ]


def tensorflow_build() -> dict:
    """TensorFlow's build record, as `tf.sysconfig.get_build_info()` has it, without TensorFlow."""
    spec = importlib.util.find_spec("tensorflow")
    path = Path(spec.origin).parent / "python" / "platform" / "build_info.py" if spec else None
    return dict(runpy.run_path(str(path))["build_info"]) if path and path.is_file() else {}
