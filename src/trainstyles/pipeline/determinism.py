"""Same inputs, same bits: what each stage that runs the model sets before TensorFlow starts."""

import tensorflow as tf

# The public API only turns op determinism on; Keras' own tests turn it off with this.
from tensorflow.python.framework.config import disable_op_determinism


def uses_xla(jit_compile: str | bool, on_gpu: bool, distributed: bool) -> bool:
    """Whether `train.jit_compile` compiles the steps with XLA here.

    "cpu" asks for it only where the steps run on one CPU: there XLA's compiled code is fixed
    for the machine kind, and byte-identical re-runs prove that its bits repeat. On a GPU,
    TensorFlow's op determinism is what promises them, and Keras cannot have both; under a
    tf.distribute strategy, XLA cannot reach the variables of the other replicas' devices.
    """
    if jit_compile == "cpu":
        return not on_gpu and not distributed
    return bool(jit_compile)


def deterministic_kernels(intra_op_threads: int, xla: bool = False) -> None:
    """Only deterministic kernels, each op split among a fixed number of threads.

    TensorFlow splits an op such as a matmul among one thread per core by default, and on
    some CPU kinds the split changes the rounding (on others, the same kernels give the same
    bits at any thread count). A fixed number makes the bits independent of the cores a
    machine or a container has. TensorFlow fixes its thread pools when it starts: call this
    before its first op.

    With `xla` (`uses_xla`), TensorFlow's op determinism is off instead: Keras
    compiles fit() without XLA whenever it is on, without a word, while the raw loop's
    tf.function would still use XLA, and the styles would no longer be the same math. The
    threads stay fixed; that XLA's compiled code repeats its bits is then measured
    (docs/reproducibility.md), no longer guaranteed by TensorFlow.
    """
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if xla:
        disable_op_determinism()
    else:
        tf.config.experimental.enable_op_determinism()
