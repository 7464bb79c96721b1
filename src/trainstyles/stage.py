"""What every stage script shares: where things live, and one-line results and errors."""

import sys
from collections.abc import Callable
from pathlib import Path

from trainstyles import StageError

PREPARED_DIR = Path("data/prepared")
SPLIT_DIR = Path("data/split")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
TIMING_DIR = METRICS_DIR / "timing"  # not a DVC out: wall-clock figures differ run to run
PLOTS_DIR = Path("plots")
LOGS_DIR = Path("logs")


def run_stage(main: Callable[[], str]) -> None:
    """Run a stage; print the one line it returns, or its error as one line and exit 1.

    Outputs are written whole or not at all (outputs.atomic_path, atomic_dir), so an error
    leaves nothing partial behind for DVC to cache.
    """
    stage = Path(sys.argv[0]).stem
    try:
        summary = main()
    except StageError as error:
        sys.exit(f"{stage}: error: {error}")
    except OSError as error:  # a full disk, a missing input, a permission: the file and why
        where = f"{error.filename}: " if error.filename else ""
        sys.exit(f"{stage}: error: {where}{error.strerror or error}")
    print(f"{stage}: {summary}", flush=True)
