"""DVC stage train_step: fit() with a train_step override."""

import trainstyles.headless  # noqa: F401 - first, before Keras: see there
from trainstyles.stage import run_stage
from trainstyles.styles import step
from trainstyles.training import train_style

if __name__ == "__main__":
    run_stage(lambda: train_style("train_step", step.train))
