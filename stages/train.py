"""DVC stage train_<style>: one style's training, run as `python stages/train.py train_<style>`."""

import sys

from trainstyles.stage import interrupt_on_signals, run_stage
from trainstyles.training import train_style

if __name__ == "__main__":
    style = " ".join(sys.argv[1:])
    interrupt_on_signals()  # SIGTERM (docker stop) too: one line on where it stopped, exit 143
    run_stage(lambda: train_style(style), name=style or "train")
