"""DVC stage train_raw: a raw tf.GradientTape loop."""

import trainstyles.headless  # noqa: F401 - first, before Keras: see there
from trainstyles.stage import run_stage
from trainstyles.styles import raw
from trainstyles.training import train_style

if __name__ == "__main__":
    run_stage(lambda: train_style("train_raw", raw.train))
