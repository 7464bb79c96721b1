"""Each style trains a few steps on learnable synthetic data and leaves a reloadable model."""

import subprocess
import sys
from functools import partial
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FIT_STYLES, learnable_split, tiny_params
from trainstyles import StageError
from trainstyles.pipeline.data import batches, features
from trainstyles.pipeline.model import build_model, compile_model
from trainstyles.pipeline.params import STYLES
from trainstyles.pipeline.resume import Backup
from trainstyles.pipeline.styles import clipped, raw, style_module
from trainstyles.pipeline.training import train_on

SHARED_KEYS = {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
EXTRA_KEYS = {"train_clipped": {"grad_norm", "clip_norm"}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train every style once for two epochs; the tests below inspect the results."""
    params = tiny_params()
    train, val = learnable_split(512, seed=10), learnable_split(128, seed=11)
    results = {}
    for style in STYLES:
        out = tmp_path_factory.mktemp(style)
        backup = Backup(out, fingerprint=style)
        _, history = train_on(style_module(style).train, params, train, val, backup, out / "logs")
        results[style] = (history, out)
    return results


@pytest.mark.parametrize("style", STYLES)
def test_style_learns_and_logs_every_epoch(trained, style):
    history, _ = trained[style]
    assert set(history) == SHARED_KEYS | EXTRA_KEYS.get(style, set())
    assert all(len(values) == 2 for values in history.values())
    assert history["val_accuracy"][-1] > 0.5  # chance is 0.1
    assert history["loss"][1] < history["loss"][0]


@pytest.mark.parametrize("style", STYLES)
def test_best_checkpoint_reloads_without_extra_arguments(trained, style):
    history, out = trained[style]
    model = keras.models.load_model(out / "best.keras")
    val = learnable_split(128, seed=11)
    accuracy = np.mean(model.predict(features(val), verbose=0).argmax(axis=1) == val.labels)
    assert accuracy == pytest.approx(max(history["val_accuracy"]), abs=1e-6)


def summaries(run_dir: Path) -> dict[str, tuple[str, list]]:
    """Tag → (plugin, values by step) of every summary TensorBoard finds in one run's events."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: (
            events.SummaryMetadata(tag).plugin_data.plugin_name,
            [tf.make_ndarray(event.tensor_proto) for event in events.Tensors(tag)],
        )
        for tag in events.Tags()["tensors"]
    }


@pytest.mark.parametrize("style", STYLES)
def test_tensorboard_has_the_epoch_scalars_and_the_fit_styles_weight_histograms(trained, style):
    history, out = trained[style]
    train, validation = (summaries(out / "logs" / run) for run in ("train", "validation"))
    for run, name, key in (
        (train, "loss", "loss"),
        (train, "accuracy", "accuracy"),
        (train, "learning_rate", "learning_rate"),
        (validation, "loss", "val_loss"),
        (validation, "accuracy", "val_accuracy"),
    ):
        plugin, values = run[f"epoch_{name}"]
        assert plugin == "scalars"
        assert values == pytest.approx(history[key], rel=1e-6), key
    histograms = [tag for tag, (plugin, _) in train.items() if plugin == "histograms"]
    if style in FIT_STYLES:
        assert sum("kernel" in tag for tag in histograms) == 3  # one per Dense layer
    else:
        assert not histograms  # the tutorial's raw loop logs scalars only


@pytest.mark.slow  # a process of its own, loading TensorFlow
def test_custom_model_classes_load_in_a_fresh_process_after_importing_the_style(trained):
    _, out = trained["train_clipped"]
    code = (
        "import keras, trainstyles.pipeline.styles.clipped\n"
        f"model = keras.models.load_model({str(out / 'best.keras')!r})\n"
        "print(type(model).__name__, model.clip_norm)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["ClippedModel", "1.0"]


def test_clipped_reports_pre_clip_norm_only_for_training(trained):
    history, out = trained["train_clipped"]
    assert "val_grad_norm" not in history
    assert all(norm > 0 for norm in history["grad_norm"])
    model = keras.models.load_model(out / "best.keras")
    val = learnable_split(64, seed=12)
    assert len(model.evaluate(features(val), val.labels, verbose=0)) == 2  # loss, accuracy


def test_grad_norm_is_the_global_norm_before_clipping():
    """With a clip norm far below the gradient's, the reported norm is still the unclipped one."""
    params = tiny_params()
    model = build_model(params.model, partial(clipped.ClippedModel, clip_norm=1e-3))
    compile_model(model, params.train)
    split = learnable_split(32, seed=13)
    x, y = tf.constant(features(split)), tf.constant(split.labels.astype("int32"))
    with tf.GradientTape() as tape:
        loss = model.compute_loss(y=y, y_pred=model(x, training=True))
    expected_norm = float(tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables)))
    history = model.fit(batches(split, batch_size=32), epochs=1, verbose=0).history  # one step
    assert expected_norm > 1e-3
    assert history["grad_norm"] == [pytest.approx(expected_norm, rel=1e-5)]


def test_the_raw_loop_names_the_same_diverging_step_with_one_or_many_steps_per_call(tmp_path):
    """Several steps per call into the graph must not blur where the loss broke."""
    train, val = learnable_split(512, seed=12), learnable_split(64, seed=13)
    messages = []
    for per_call in (1, 32):
        params = tiny_params(train={"learning_rate": 1.0e30, "steps_per_execution": per_call})
        backup = Backup(tmp_path / str(per_call), fingerprint="diverge")
        with pytest.raises(StageError) as error:
            train_on(raw.train, params, train, val, backup, tmp_path / "logs")
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert " at epoch 1, step " in messages[0] and ", step 1;" not in messages[0]
