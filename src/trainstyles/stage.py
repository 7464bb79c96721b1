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
    """Run a stage; print the one line it returns, or its error as one line and exit 1."""
    stage = Path(sys.argv[0]).stem
    try:
        summary = main()
    except StageError as error:
        sys.exit(f"{stage}: error: {error}")
    print(f"{stage}: {summary}", flush=True)
