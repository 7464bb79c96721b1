"""Host round trips, counted: every time Python hands the runtime work to run. On a GPU an
epoch's math takes about a millisecond; what decides its speed is how often the host must
dispatch and feed it (docs/bench.md). Each counter runs in an epoch that is not timed."""

from collections.abc import Callable


class EagerDispatches:
    """TensorFlow's dispatches from Python: each op and each call of a compiled graph (a
    tf.function) executed eagerly, as TensorFlow's op callbacks see them. Ops that run inside
    a graph are the graph's own work, not round trips: callbacks at graph-building time, which
    carry the graph, are left out."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, op_type, inputs, attrs, outputs, op_name=None, graph=None):
        if graph is None:
            self.count += 1

    def start(self) -> None:
        from tensorflow.python.framework import op_callbacks  # noqa: PLC0415 - no public hook

        op_callbacks.add_op_callback(self)

    def stop(self) -> None:
        from tensorflow.python.framework import op_callbacks  # noqa: PLC0415

        op_callbacks.remove_op_callback(self)


class Counted:
    """A compiled function that counts its calls: in a JAX loop that calls nothing else, each
    call is one dispatch (its arguments travel with it)."""

    def __init__(self, function: Callable) -> None:
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)
