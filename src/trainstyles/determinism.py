"""Same inputs, same bits: what each stage that runs the model sets before TensorFlow starts."""

import tensorflow as tf


def deterministic_kernels(intra_op_threads: int) -> None:
    """Only deterministic kernels, each op split among a fixed number of threads.

    TensorFlow splits an op such as a matmul among one thread per core by default, and on
    some CPU kinds the split changes the rounding (on others, the same kernels give the same
    bits at any thread count). A fixed number makes the bits independent of the cores a
    machine or a container has. TensorFlow fixes its thread pools when it starts: call this
    before its first op.
    """
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.experimental.enable_op_determinism()
