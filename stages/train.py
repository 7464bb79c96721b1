"""DVC stage train_<style>: one style's training, run as `python stages/train.py train_<style>`."""

import sys

from trainstyles.stage import run_stage
from trainstyles.training import train_style

if __name__ == "__main__":
    style = " ".join(sys.argv[1:])
    run_stage(lambda: train_style(style), name=style or "train")
