from pathlib import Path

import pytest
from ruamel.yaml import YAML

from trainstyles import StageError
from trainstyles.pipeline.params import load_params

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_holds_the_tutorial_settings():
    params = load_params(REPO / "params.yaml")
    assert (params.seed, params.split.val_size) == (42, 5000)
    assert params.model.hidden_units == [256, 128] and params.model.num_classes == 10
    assert (params.train.batch_size, params.train.learning_rate) == (128, 1e-3)
    assert (params.train.jit_compile, params.train.steps_per_execution) == ("cpu", 32)
    callbacks = params.train_fit.callbacks
    assert (callbacks.early_stopping.monitor, callbacks.early_stopping.patience) == ("val_loss", 3)
    assert callbacks.early_stopping.restore_best_weights
    assert (callbacks.checkpoint.monitor, callbacks.checkpoint.mode) == ("val_accuracy", "max")
    reduce = callbacks.reduce_lr_on_plateau
    assert (reduce.monitor, reduce.factor, reduce.patience, reduce.min_lr) == (
        "val_loss",
        0.5,
        2,
        1e-5,
    )
    assert callbacks.tensorboard.histogram_freq == 1
    assert params.train_step.callbacks == callbacks and params.train_fit.epochs == 30
    assert params.train_raw.epochs == 10
    assert (params.train_clipped.epochs, params.train_clipped.clip_norm) == (5, 1.0)
    assert params.train_clipped.callbacks.early_stopping is not None
    assert (params.distribute.strategy, params.distribute.logical_cpus) == ("none", None)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        (
            "train_clipped",
            "clip_norm",
            0.0,
            "train_clipped.clip_norm = 0.0: input should be greater than 0",
        ),
        ("train_raw", "epochs", -1, "train_raw.epochs = -1: input should be greater than 0"),
        ("train", "batch_size", "128", "train.batch_size = '128': input should be a valid integer"),
        ("train", "batch_sise", 64, "train.batch_sise = 64: extra inputs are not permitted"),
        (
            "train",
            "jit_compile",
            "gpu",
            "train.jit_compile = 'gpu': input should be 'cpu', true or false",
        ),
        (
            "distribute",
            "strategy",
            "mirror",
            "distribute.strategy = 'mirror': input should be 'none', 'mirrored' or 'multi_worker'",
        ),
        (
            "distribute",
            "logical_cpus",
            2,
            "distribute.logical_cpus = 2: value error, only strategy 'mirrored' splits the cpu",
        ),
        (
            "distribute",
            "strategy",
            "mirrored",
            "distribute = {'logical_cpus': None, 'strategy': 'mirrored'}: value error, "
            "train.steps_per_execution = 32 must be 1 under a tf.distribute strategy "
            "(keras 3.15's multi-step fit() fails there)",
        ),
    ],
)
def test_bad_params_are_refused_in_one_line_naming_key_and_value(
    tmp_path, section, key, value, message
):
    raw = YAML(typ="safe").load(REPO / "params.yaml")
    raw[section][key] = value
    path = tmp_path / "params.yaml"
    YAML(typ="safe").dump(raw, path)
    with pytest.raises(StageError) as refused:
        load_params(path)
    assert str(refused.value) == f"{path}: {message}"


def test_missing_section_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("train_raw:\n  epochs: 10\n", ""))
    with pytest.raises(StageError, match=r"params.yaml: train_raw: field required"):
        load_params(path)


@pytest.mark.parametrize(
    ("jit_compile", "on_gpu", "distributed", "xla"),
    [
        ("cpu", False, False, True),
        ("cpu", True, False, False),
        ("cpu", False, True, False),
        (True, True, True, True),
        (False, False, False, False),
    ],
)
def test_jit_compile_cpu_asks_for_xla_only_where_the_steps_run_on_one_cpu(
    jit_compile, on_gpu, distributed, xla
):
    from trainstyles.pipeline.determinism import uses_xla  # noqa: PLC0415 - imports TensorFlow

    assert uses_xla(jit_compile, on_gpu, distributed) is xla
