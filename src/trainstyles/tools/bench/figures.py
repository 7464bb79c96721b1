"""The bench's arithmetic, pure and unit-tested without TensorFlow: FLOPs of an epoch, median
and range, paired ratios to the peer, the kind of machine each figure was measured on, and the
summary of the timed runs that the tables show."""

import itertools
import statistics
from collections.abc import Sequence

from trainstyles.pipeline.data import IMAGE_SIZE
from trainstyles.pipeline.params import STYLES, ModelParams, Params

PEER = "pytorch"  # the reference of the x pytorch column
JAX_STEP = "jax, a jitted step per batch"
JAX_SCAN = "jax, the epoch as one lax.scan"
PEERS = (JAX_STEP, JAX_SCAN, PEER)  # the same MLP outside the pipeline, in other frameworks

NO_XLA = " (no XLA)"  # a style's variant with train.jit_compile false: "train_fit (no XLA)"


def layer_shapes(model: ModelParams) -> list[tuple[int, int]]:
    """(inputs, outputs) of each Dense layer: 784 → 256 → 128 → 10 for the tutorial."""
    sizes = [IMAGE_SIZE, *model.hidden_units, model.num_classes]
    return list(itertools.pairwise(sizes))


def training_flops_per_sample(model: ModelParams) -> int:
    """Matmul FLOPs (2 per multiply-add) of one sample's forward and backward pass.

    Forward: x·W per layer. Backward: the weight gradient xᵀ·δ per layer, and the input gradient
    δ·Wᵀ for every layer but the first (nothing needs the gradient of the pixels). Bias adds,
    activations and the loss are O(units), three orders of magnitude fewer: left out.
    """
    shapes = layer_shapes(model)
    forward = sum(2 * n_in * n_out for n_in, n_out in shapes)
    input_gradients = sum(2 * n_in * n_out for n_in, n_out in shapes[1:])
    return 2 * forward + input_gradients


def inference_flops_per_sample(model: ModelParams) -> int:
    return sum(2 * n_in * n_out for n_in, n_out in layer_shapes(model))


def epoch_flops(model: ModelParams, train_size: int, val_size: int) -> int:
    """An epoch as every variant runs it: train on the training set, then validate."""
    return train_size * training_flops_per_sample(model) + val_size * inference_flops_per_sample(
        model
    )


def median_range(values: Sequence[float]) -> dict:
    """Median and range: with a machine shared by others, the mean would chase the outliers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratios(times: dict[str, list[list[float]]], reference: str) -> dict[str, list[float]]:
    """Per repeat, each variant's median epoch divided by the reference's median epoch of
    that same repeat: a slow minute on the machine slows both sides of a pair."""
    return {
        name: [
            statistics.median(mine) / statistics.median(theirs)
            for mine, theirs in zip(runs, times[reference], strict=True)
        ]
        for name, runs in times.items()
        if name != reference
    }


def machine_kind(where: dict) -> str:
    """The kind of the bench's machine (`machine.kind_name`: its CPU's). Results from before
    the bench recorded the fingerprint name it as well as they can: by the CPU's model alone
    ("AMD EPYC"), without its family/model."""
    return where.get("kind") or where["cpu"]


def measured_on(results: dict, figures: dict) -> str:
    """The kind of machine that measured `figures`: theirs, where the bench recorded it, else
    the bench machine's kind, on which older results measured everything."""
    return figures.get("measured_on") or machine_kind(results["machine"])


def fixed_overhead(results: dict) -> dict | None:
    """What a full `dvc repro -f` spends beyond its epochs: the run's wall time less each style's
    epochs at that style's median epoch (imports, tracing, data loading, evaluate, DVC itself).
    None for results from before the bench counted the run's epochs."""
    pipeline = results.get("pipeline") or {}
    if "epochs_run" not in pipeline:
        return None
    epochs = pipeline["epochs_run"]
    epoch_seconds = sum(
        count * results["epochs"][style]["seconds_per_epoch"]["median"]
        for style, count in epochs.items()
    )
    return {
        "seconds": pipeline["full_repro_seconds"] - epoch_seconds,
        "epochs": sum(epochs.values()),
    }


def variants(without_xla: bool, peers: Sequence[str]) -> list[str]:
    """Each style, each again without XLA where `without_xla`, and the `peers` that run, in
    PEERS' order."""
    plain = [style + NO_XLA for style in STYLES if without_xla]
    return [*STYLES, *plain] + [p for p in PEERS if p in peers]


def summarise(params: Params, measured: dict, limit: dict) -> dict:
    """Per variant: seconds per epoch and samples per second (median and range over all its
    timed epochs), the paired ratios to the peer, and the limit."""
    times, train_size = measured["times"], measured["train_size"]
    epochs = {}
    for name, runs in times.items():
        flat = [seconds for run in runs for seconds in run]
        epochs[name] = {
            "seconds_per_epoch": median_range(flat),
            "samples_per_second": train_size / statistics.median(flat),
            "measured_on": measured["kinds"][name],
        }
        counted = measured.get("dispatches", {}).get(name)
        if counted:  # one count per repeat; a count that differs between repeats shows its range
            epochs[name]["dispatches_per_epoch"] = median_range(counted)
    ratios = paired_ratios(times, PEER) if PEER in times else {}
    return {
        "epochs": epochs,
        "profile": {
            name: profile_medians(runs) for name, runs in measured.get("profiles", {}).items()
        },
        "ratio_to_peer": {name: median_range(values) for name, values in ratios.items()},
        "limit": limit,
        "times": times,
        "peer_missing": measured["peer_missing"],
        "jax_missing": measured.get("jax_missing"),
        "setup": {
            "train_size": train_size,
            "val_size": measured["val_size"],
            "batch_size": params.train.batch_size,
            "train": params.train.model_dump(),
        },
    }


def profile_medians(runs: list[dict]) -> dict:
    """One variant's profile over its repeats: the median import and tracing of a run, and
    the median seconds of each part of an epoch over all its timed epochs."""
    parts = runs[0]["parts"]
    return {
        "import": statistics.median(run["import"] for run in runs),
        "tracing": statistics.median(run["tracing"] for run in runs),
        "parts": {
            part: statistics.median(seconds for run in runs for seconds in run["parts"][part])
            for part in parts
        },
    }
