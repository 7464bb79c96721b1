"""requirements.txt as one lock for each supported Python (`make lock-check`, which passes the
versions; CI runs it, as it needs the package index). For each version, pip's own resolver, in a
dry run for a manylinux x86-64 machine with the oldest glibc of the supported distributions, must
find a wheel for every pin and install nothing the lock does not pin. One line per version; exit 1
naming the pin without a wheel, or the package without a pin."""

import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# Ubuntu 22.04's glibc, the oldest of the supported distributions (Debian 12 has 2.36): a
# manylinux_2_N wheel runs on glibc 2.N and later, so any N up to this one will do.
GLIBC_MINOR = 35
PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
# Pins that PyPI has as source only: each is built once into a wheel, which must be pure Python
# (one wheel then serves every version). DVC's hydra-core requires antlr4 4.9, which is source only.
SOURCE_ONLY = ("antlr4-python3-runtime",)
NO_WHEEL = re.compile(r"No matching distribution found for (\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """requirements.txt's pins, by canonical name."""
    lines = (line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return {
        canonical(name): version for name, version in (line.split("==") for line in lines if line)
    }


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )


def build_source_only(locked: dict[str, str], wheels: Path) -> str | None:
    """Builds the source-only pins' wheels into `wheels`; what failed, if anything."""
    for name in SOURCE_ONLY:
        built = pip(
            "wheel", "--no-deps", "--no-binary=:all:", "-w", str(wheels), f"{name}=={locked[name]}"
        )
        if built.returncode != 0:
            return f"{name}=={locked[name]} does not build: {first_error(built)}"
    impure = ", ".join(w.name for w in wheels.glob("*.whl") if not w.name.endswith("-none-any.whl"))
    return f"{impure}: not pure Python, so not one wheel for every version" if impure else None


def first_error(result: subprocess.CompletedProcess) -> str:
    """pip's first error line, which names the pins (its last only points to pip's docs)."""
    lines = result.stderr.splitlines()
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    return errors[0] if errors else "pip failed, and said no error"


def check(version: str, locked: dict[str, str], wheels: Path) -> tuple[bool, str]:
    """Whether pip resolves the lock for `version` to wheels and to the pins alone; its line."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        resolved = pip(
            "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            # Older pips take platform options only with a target, which a dry run leaves empty.
            "--target", scratch, "--find-links", str(wheels), "--report", str(report),
            "--python-version", version, "--implementation", "cp",
            *(option for platform in PLATFORMS for option in ("--platform", platform)),
            "-r", str(REQUIREMENTS),
        )  # fmt: skip
        if resolved.returncode != 0:
            missing = NO_WHEEL.search(resolved.stderr)
            return False, f"no wheel for {missing[1]}" if missing else first_error(resolved)
        installed = {
            canonical(item["metadata"]["name"])
            for item in json.loads(report.read_text())["install"]
        }
    unpinned = sorted(installed - locked.keys())
    if unpinned:
        return False, f"installs what requirements.txt does not pin: {', '.join(unpinned)}"
    return True, f"each of the {len(installed)} pins installs from a wheel, and nothing else"


def main(versions: list[str]) -> int:
    locked = pins()
    platform = f"manylinux x86-64, glibc 2.{GLIBC_MINOR}"
    with tempfile.TemporaryDirectory() as wheels:
        failed = build_source_only(locked, Path(wheels))
        if failed:
            print(f"lock-check: {failed}", file=sys.stderr)
            return 1
        with ThreadPoolExecutor() as pool:  # each resolution mostly waits for the index
            results = list(pool.map(lambda version: check(version, locked, Path(wheels)), versions))
    for version, (passed, said) in zip(versions, results, strict=True):
        stream = sys.stdout if passed else sys.stderr
        print(f"lock-check: Python {version} ({platform}): {said}", file=stream, flush=True)
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
