"""The limit of an epoch: its matmul FLOPs at the best float32 GEMM rate numpy reaches, with
numpy's BLAS held to the threads the styles train with (`train.intra_op_threads`)."""

import contextlib
import time
from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from trainstyles.pipeline.params import ModelParams
from trainstyles.tools.bench.figures import epoch_flops, layer_shapes

SQUARE_GEMM = (2048, 2048, 2048)


@contextlib.contextmanager
def gemm_threads(threads: int) -> Iterator[str]:
    """numpy's BLAS limited to `threads` while the block runs; yields which BLAS that is and
    its threads. The styles train with `train.intra_op_threads`: a GEMM rate on more threads
    than that would be a limit no style was allowed to reach."""
    with threadpool_limits(limits=threads, user_api="blas"):
        yield blas_description()


def blas_description() -> str:
    """numpy's BLAS as threadpoolctl sees it, such as "openblas 0.3.31 (SkylakeX), 2 threads"."""
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    return "; ".join(
        f"{pool['internal_api']} {pool['version']} ({pool.get('architecture') or 'generic'}), "
        f"{pool['num_threads']} threads"
        for pool in pools
    )


def matmul_flops_per_second(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best float32 GEMM throughput of numpy on (m, k)·(k, n), over `seconds` of runs.

    The best, not the median: the limit is what the hardware can do when it is not disturbed.
    """
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def limit_figures(
    model: ModelParams, train_size: int, val_size: int, batch_size: int, peak: float, blas: str
) -> dict:
    """The epoch time of a machine that did nothing but its matmuls at full GEMM speed.

    `peak` is a large square GEMM's best throughput over the run; the model's own shapes
    (batch by layer) are measured beside it, to show how much of it a batch of 128 can use.
    The limit takes the best rate any of them reached: on a shared machine a busy second can
    only lower a measured rate, never raise it. `blas`: the BLAS and threads they ran on.
    """
    shaped = [
        matmul_flops_per_second(batch_size, n_in, n_out) for n_in, n_out in layer_shapes(model)
    ]
    peak = max(peak, *shaped)
    flops = epoch_flops(model, train_size, val_size)
    return {
        "epoch_flops": flops,
        "gemm": "numpy float32: 2048x2048x2048 (1 s per repeat) and the model's shapes, best",
        "blas": blas,
        "gemm_gflops": peak / 1e9,
        "model_shape_gflops": [value / 1e9 for value in shaped],
        "epoch_seconds": flops / peak,
    }
