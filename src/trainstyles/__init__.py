"""trainstyles: one Keras model trained four ways, compared by a DVC pipeline."""

import os

# TensorFlow's C++ INFO lines ("could not find cuda drivers", "binary is optimized for AVX2")
# describe the machine, not the run; the stages report the devices themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

STYLES = ("train_fit", "train_step", "train_raw", "train_clipped")


class StageError(Exception):
    """A problem the user can fix (bad params, bad data): reported as one line, exit 1."""
