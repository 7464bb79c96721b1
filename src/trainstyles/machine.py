"""The machine a run trained on: what decides its bits besides the code, the params and the data.

Another CPU kind blocks and vectorises the same sums differently (oneDNN and Eigen pick their
kernels by instruction set and cache size), another thread split or a GPU adds them in another
order, and so the same seed trains other bits. Each trainer writes this fingerprint beside its
outputs, so that "the machine changed" can be told apart from "the change changed something".
It is read without TensorFlow, from the OS and the packages' metadata, so the check after
`dvc repro` costs nothing:

    python -m trainstyles.machine [--against REV]
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
from pathlib import Path

from trainstyles import StageError
from trainstyles.params import STYLES, load_params
from trainstyles.stage import MACHINE_DIR, run_stage

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


def describe(machine: dict) -> str:
    """One line a person can read: the CPU, its kernel features, threads, GPU and versions."""
    processor = machine["cpu"]
    graphics = ", ".join(f"{gpu['name']} (driver {gpu['driver']})" for gpu in machine["gpu"])
    versions = machine["versions"]
    trained = f"; trained on {', '.join(machine['devices'])}" if "devices" in machine else ""
    return (
        f"{processor['model_name']} ({processor['vendor']} {processor['family_model']}; "
        f"{' '.join(processor['features']) or 'no AVX'}; "
        f"{' '.join(f'{k} {v}' for k, v in processor['caches'].items())}), "
        f"{machine['threads']['intra_op']} intra-op threads, oneDNN {machine['threads']['onednn']}"
        f", {graphics or 'no GPU'}; TensorFlow {versions['tensorflow']}, Keras {versions['keras']}"
        f"{trained}"
    )


# Words in /proc/cpuinfo's model names that say nothing of the kernels a CPU runs.
MODEL_NOISE = re.compile(r"\((?:R|TM)\)|\bProcessor\b|\bCPU\b|@.*$|\d+-Core\b", re.IGNORECASE)


def trained_on_gpu(machine: dict) -> bool:
    return any("GPU" in device for device in machine.get("devices", []))


def kind_name(machine: dict) -> str:
    """The kind of machine a fingerprint describes, in a few words: the GPU that trained, else
    the CPU's model and family/model, which set the kernels and so the bits ("AMD EPYC 25/17")."""
    if trained_on_gpu(machine) and machine["gpu"]:
        return machine["gpu"][0]["name"]
    processor = machine["cpu"]
    model = " ".join(MODEL_NOISE.sub(" ", processor["model_name"]).split()) or processor["vendor"]
    return f"{model} {processor['family_model']}"


def kind_slug(machine: dict) -> str:
    """kind_name as a file name: "amd-epyc-25-17"."""
    return re.sub(r"[^a-z0-9]+", "-", kind_name(machine).lower()).strip("-")


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two fingerprints."""
    keys = sorted(set(a) | set(b))
    found = []
    for key in keys:
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found += differences(left, right, f"{prefix}{key}.")
        elif left != right:
            found.append(f"{prefix}{key}")
    return found


def kind_differences(recorded: dict, here: dict) -> list[str]:
    """Where a recorded machine differs from `here`, a fingerprint taken without TensorFlow.
    Which devices a run trained on follows from the machine and train.device, and only a
    trainer can ask TensorFlow: the machines are compared on what `here` knows."""
    return differences({key: recorded[key] for key in recorded if key in here}, here)


def read_at(revision: str | None, path: Path) -> dict | None:
    """A fingerprint file as it is in the workspace (revision None) or at a git revision."""
    if revision is None:
        return json.loads(path.read_text()) if path.is_file() else None
    shown = subprocess.run(
        ["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=False
    )
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def run_machines(revision: str | None = None, root: Path = Path()) -> dict[str, dict | None]:
    """Each style's training machine, as recorded in the workspace or at a revision."""
    return {style: read_at(revision, root / MACHINE_DIR / f"{style}.json") for style in STYLES}


def comparison(here: dict, recorded: dict[str, dict | None], whose: str) -> str:
    """Whether `here` is the kind of machine every recorded style trained on, and what follows."""
    missing = [style for style, machine in recorded.items() if machine is None]
    if missing:
        return f"{whose} records no machine for {', '.join(missing)}: it cannot be compared"
    differing = sorted({key for m in recorded.values() for key in kind_differences(m, here)})
    if not differing:
        return f"this machine is the kind {whose} trained on: the same inputs give the same bits"
    return (
        f"this machine differs from the one {whose} trained on in {', '.join(differing)}: the "
        "same seed trains other bits here, so trained metrics move by rounding alone; "
        "`make report` judges each change against the seed sweep's noise"
    )


def main() -> str:
    parser = argparse.ArgumentParser(prog="python -m trainstyles.machine", description=__doc__)
    parser.add_argument("--against", metavar="REV", default="HEAD", help="the committed run")
    args = parser.parse_args()
    try:
        here = fingerprint(load_params().train.intra_op_threads)
    except OSError as error:
        raise StageError(f"cannot read this machine's description: {error}") from None
    return f"{describe(here)}; {comparison(here, run_machines(args.against), args.against)}"


if __name__ == "__main__":
    run_stage(main)
