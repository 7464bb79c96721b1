"""The styles are the same math: equal weights and losses to the bit, on a small subset."""

import math

import pytest

from conftest import learnable_split, tiny_params
from trainstyles.equivalence import CLAIMS, comparable, train_every_style, verdicts

# 600 images in batches of 32: a short last batch of 24, where an unweighted loss mean differs.
TRAIN, VAL = learnable_split(600, seed=20), learnable_split(100, seed=21)


def test_fit_step_and_raw_agree_bitwise_and_an_infinite_clip_equals_no_clip(tmp_path):
    params = comparable(tiny_params(), epochs=2)
    assert params.train_clipped.clip_norm == math.inf
    assert params.train_fit.callbacks.early_stopping is None
    results = train_every_style(params, TRAIN, VAL, tmp_path)
    assert verdicts(results) == [(style, reference, True, True) for style, reference in CLAIMS]
    assert len(results["train_raw"][1]) == 2


def test_the_comparison_can_fail_a_finite_clip_changes_the_weights(tmp_path):
    params = comparable(tiny_params(), epochs=1)
    params = params.model_copy(
        update={"train_clipped": params.train_clipped.model_copy(update={"clip_norm": 0.01})}
    )
    results = train_every_style(params, TRAIN, VAL, tmp_path)
    clipped_verdict = verdicts(results)[-1]
    assert clipped_verdict[:2] == ("train_clipped", "train_step")
    assert clipped_verdict[2:] == (False, False)
    assert results["train_clipped"][1] != pytest.approx(results["train_step"][1], rel=1e-9)
