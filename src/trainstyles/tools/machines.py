"""Machines compared and printed: the fingerprints the trainers recorded (pipeline/machine.py),
read back, named as a kind of machine, and set against this one. Without TensorFlow, so the check
after `dvc repro` costs nothing:

    python -m trainstyles.tools.machines [--against REV]
"""

import argparse
import json
import re
import subprocess
from pathlib import Path

from trainstyles import StageError
from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import STYLES, load_params
from trainstyles.pipeline.stage import MACHINE_DIR, run_stage


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
    parser = argparse.ArgumentParser(
        prog="python -m trainstyles.tools.machines", description=__doc__
    )
    parser.add_argument("--against", metavar="REV", default="HEAD", help="the committed run")
    args = parser.parse_args()
    try:
        here = fingerprint(load_params().train.intra_op_threads)
    except OSError as error:
        raise StageError(f"cannot read this machine's description: {error}") from None
    return f"{describe(here)}; {comparison(here, run_machines(args.against), args.against)}"


if __name__ == "__main__":
    run_stage(main)
