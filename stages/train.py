"""DVC stage train_<style>: one style's training, run as `python stages/train.py train_<style>`."""

import sys

from trainstyles.pipeline.params import check_style, load_params
from trainstyles.pipeline.stage import interrupt_on_signals, run_stage

# Before TensorFlow loads: Ctrl-C or SIGTERM (docker stop) at any point ends in one line on where
# the trainer stopped, exit 130 or 143.
interrupt_on_signals()


def main(style: str) -> str:
    # A style that does not exist, or params that do not validate: said in one line before
    # TensorFlow takes its seconds to load.
    check_style(style)
    params = load_params()
    from trainstyles.pipeline.training import train_style  # noqa: PLC0415

    return train_style(style, params)


if __name__ == "__main__":
    style = " ".join(sys.argv[1:])
    run_stage(lambda: main(style), name=style or "train", timed=True)
