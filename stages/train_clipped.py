"""DVC stage train_clipped: the train_step override with global-norm gradient clipping."""

import trainstyles.headless  # noqa: F401 - first, before Keras: see there
from trainstyles.stage import run_stage
from trainstyles.styles import clipped
from trainstyles.training import train_style

if __name__ == "__main__":
    run_stage(lambda: train_style("train_clipped", clipped.train))
