"""DVC stage train_<style>: one style's training, run as `python stages/train.py train_<style>`."""

import sys

from trainstyles.stage import interrupt_on_signals, run_stage

# Before TensorFlow loads: Ctrl-C or SIGTERM (docker stop) at any point ends in one line on where
# the trainer stopped, exit 130 or 143.
interrupt_on_signals()
from trainstyles.training import train_style  # noqa: E402

if __name__ == "__main__":
    style = " ".join(sys.argv[1:])
    run_stage(lambda: train_style(style), name=style or "train")
