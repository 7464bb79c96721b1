"""trainstyles: one Keras model trained several ways, compared by a DVC pipeline."""

import os

# TensorFlow's C++ INFO lines (such as "binary is optimized for AVX2") describe the build, not
# the run. Its CUDA probe on a machine without a GPU ("could not find cuda drivers", "failed
# call to cuInit") prints before its logging is set up and ignores this; that is expected.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


class StageError(Exception):
    """A problem the user can fix (bad params, bad data): reported as one line, exit 1."""


class StageWarning(UserWarning):
    """Outputs that are valid but may mean nothing (a run that did not learn): said in one line
    after the stage's summary; the stage still succeeds."""
