"""The trained bits depend on how many threads split each op, never on how many cores there are."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # a TensorFlow process per run

TRAIN_AND_HASH = """
import hashlib, sys
import keras
import numpy as np
import tensorflow as tf
from trainstyles.pipeline.determinism import deterministic_kernels
from trainstyles.pipeline.model import build_model, compile_model
from trainstyles.pipeline.params import load_params

params = load_params()
if sys.argv[1] == "pinned":
    deterministic_kernels(params.train.intra_op_threads)
else:  # the control: TensorFlow's default, one thread per core it may use
    tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(params.seed)
rng = np.random.default_rng(0)
pixels, labels = rng.random((1280, 784), dtype=np.float32), rng.integers(0, 10, 1280)
model = compile_model(build_model(params.model), params.train)
model.fit(pixels, labels, batch_size=params.train.batch_size, shuffle=False, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def weights_hash_on(cores: set[int], pinned: bool = True, onednn: bool = True) -> str:
    """Train 10 batches of the tutorial's MLP in a process that may run only on `cores`:
    TensorFlow's default is one thread per core it may use. `onednn` picks the CPU kernels:
    oneDNN's, the default, or Eigen's, TensorFlow's own."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    child = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_HASH, "pinned" if pinned else "unpinned"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )  # fmt: skip
    return child.stdout.split()[-1]


KERNELS = {"onednn": True, "eigen": False}


@pytest.mark.parametrize("kernels", KERNELS)
def test_one_core_trains_the_bits_that_two_train(kernels):
    """With oneDNN's kernels, the pipeline's, and with Eigen's, TensorFlow's own."""
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("needs a machine with two cores or more")
    one, every, onednn = {min(cores)}, cores, KERNELS[kernels]
    # The control: without the fixed thread count, does the split change the bits here? Eigen's
    # kernels round by split wherever this has been measured; oneDNN's AVX-512 kernels give the
    # same weights at any thread count, and there the pin cannot matter.
    unpinned = {weights_hash_on(cores, pinned=False, onednn=onednn) for cores in (one, every)}
    if len(unpinned) == 1:
        pytest.skip(
            f"with {kernels}'s kernels on this CPU, 1 and 2 unpinned threads train the same "
            "weights: the thread split does not change the rounding, so the pin cannot fail here"
        )
    assert weights_hash_on(one, onednn=onednn) == weights_hash_on(every, onednn=onednn)
