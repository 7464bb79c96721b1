"""What every stage script shares: where things live, one-line results and errors, and the
record of what each stage took."""

import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from trainstyles import StageError, StageWarning
from trainstyles.pipeline.outputs import write_json

PREPARED_DIR = Path("data/prepared")
SPLIT_DIR = Path("data/split")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
TIMING_DIR = METRICS_DIR / "timing"  # not a DVC out: wall-clock figures differ run to run
MACHINE_DIR = METRICS_DIR / "machine"  # what each style trained on (machine.fingerprint)
PLOTS_DIR = Path("plots")
LOGS_DIR = Path("logs")


@dataclass
class StageRecord:
    """What a stage took, written to `path` (TIMING_DIR/<stage>.json) by run_stage as the last
    thing a stage does when it succeeds: its wall time and peak memory, and the `figures` the
    stage adds itself (a trainer's training time). With `path` None nothing is written."""

    path: Path | None
    figures: dict = field(default_factory=dict)


# The running stage's record: run_stage sets it, the stage's code adds to it (stage_record).
RECORD: ContextVar[StageRecord] = ContextVar("stage_record")


def stage_record() -> StageRecord:
    """The record of the stage that runs now; outside run_stage, one that nobody writes."""
    return RECORD.get(StageRecord(None))


def peak_rss_mb() -> float:
    """This process's high-water mark of resident memory since its program started (Linux's
    VmHWM), in MB. Not getrusage's ru_maxrss: Linux carries that across exec, and DVC's shell
    execs the stage, so it would be DVC's own peak wherever that is the higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # the kernel counts in kB
    raise OSError("/proc/self/status has no VmHWM line")


def resources_used(seconds: float) -> dict:
    """A stage's wall time and its process's peak resident memory."""
    return {"wall_seconds": round(seconds, 2), "peak_rss_mb": peak_rss_mb()}


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, a scheduler), raised where Ctrl-C raises KeyboardInterrupt, so that
    both end a stage the same way."""


INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


def interrupt_on_signals() -> None:
    """Make Ctrl-C and SIGTERM raise in the stage, where it can say how far it got; until
    `deliver_interrupts()` they are held (blocked), so that one arriving while TensorFlow loads
    is raised there too, not as a traceback from inside an import. Repeats are ignored: a
    second Ctrl-C must not cut short the line that the first one leads to."""

    def interrupt(signum, frame):
        for each in INTERRUPTS:
            signal.signal(each, signal.SIG_IGN)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    for each in INTERRUPTS:
        signal.signal(each, interrupt)
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)


def deliver_interrupts() -> None:
    """Raise a held Ctrl-C or SIGTERM now, and any later one as it comes (interrupt_on_signals);
    where nothing holds them, as in a test, this changes nothing."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def end_stage(status: int) -> None:
    """End the stage with `status`: where the stage is its process's own program, as DVC runs
    it (`python stages/<stage>.py`), the process ends here, without the interpreter's teardown.

    A stage has closed its outputs and renamed them into place before this, so teardown has
    nothing left to save; yet in a process that loaded TensorFlow it takes seconds (its thread
    pools, and the objects of thousands of modules), at the end of every training stage. Run
    inside another program (a test's harness), a stage returns or raises SystemExit as usual.
    """
    if sys.orig_argv[1:2] != sys.argv[:1]:  # `python -c …`, pytest: not the stage's own process
        if status:
            sys.exit(status)
        return
    logging.shutdown()  # flushes the handlers that buffer, absl's among them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_stage(main: Callable[[], str], name: str | None = None, timed: bool = False) -> None:
    """Run a stage and end it (`end_stage`): print the one line it returns, then one line per
    StageWarning it gave, exit 0; or its error as one line and exit 1; or on Ctrl-C one line
    (what the KeyboardInterrupt says) and exit 130 (143 for SIGTERM). Each line starts with
    `name`, by default the script's. Anything else is a bug, and ends in its traceback.

    Outputs are written whole or not at all (outputs.atomic_path, atomic_dir), so an error or
    an interrupt leaves nothing partial behind for DVC to cache. A `timed` stage (a stage of
    dvc.yaml, not a tool) writes its StageRecord last, and only when it succeeds.
    """
    stage = name or Path(sys.argv[0]).stem
    token = RECORD.set(StageRecord(TIMING_DIR / f"{stage}.json" if timed else None))
    start = time.perf_counter()
    warned: list[str] = []
    show = warnings.showwarning

    def keep_stage_warnings(message, category, *where):
        if issubclass(category, StageWarning):
            warned.append(str(message))
        else:
            show(message, category, *where)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", StageWarning)
            warnings.showwarning = keep_stage_warnings
            summary = main()
        record = stage_record()
        if record.path:
            write_json(resources_used(time.perf_counter() - start) | record.figures, record.path)
    except StageError as error:
        print(f"{stage}: error: {error}", file=sys.stderr)
        end_stage(1)
    except OSError as error:  # a full disk, a missing input, a permission: the file and why
        where = f"{error.filename}: " if error.filename else ""
        print(f"{stage}: error: {where}{error.strerror or error}", file=sys.stderr)
        end_stage(1)
    except KeyboardInterrupt as interrupt:  # Ctrl-C; SIGTERM too after interrupt_on_signals()
        if sys.stdout.isatty():
            print()  # off the line of Keras' progress bar, which has no newline yet
        print(f"{stage}: {interrupt or 'interrupted'}", file=sys.stderr)
        # The shell's exit status for a command ended by a signal: 128 + its number.
        end_stage(128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT))
    finally:
        RECORD.reset(token)
    print(f"{stage}: {summary}")
    for warning in warned:
        print(f"{stage}: warning: {warning}", file=sys.stderr)
    end_stage(0)
