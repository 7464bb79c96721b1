"""The styles are the same math: equal weights and losses to the bit, on a small subset."""

import math

import pytest

from conftest import REPO, learnable_split, tiny_params
from trainstyles.pipeline.data import save_split
from trainstyles.tools import equivalence
from trainstyles.tools.equivalence import CLAIMS, comparable, train_every_style, verdicts

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
    # train_clipped's claim, wherever a style added after it puts it in the list
    clipped_verdict = next(
        verdict for verdict in verdicts(results) if verdict[0] == "train_clipped"
    )
    assert clipped_verdict[:2] == ("train_clipped", "train_step")
    assert clipped_verdict[2:] == (False, False)
    assert results["train_clipped"][1] != pytest.approx(results["train_step"][1], rel=1e-9)


@pytest.fixture
def split_here(tmp_path, monkeypatch):
    """A working directory with the repository's params and a small split, as `make
    equivalence` finds them."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for name, split in (("train", TRAIN), ("val", VAL)):
        save_split(split, tmp_path / "data" / "split" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_command_exits_0_when_proven_and_1_when_a_claim_fails(split_here, monkeypatch, capsys):
    argv = ["--epochs", "1", "--train-limit", "300"]
    assert equivalence.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "equivalence: proven"

    def with_a_finite_clip(params, epochs):
        params = comparable(params, epochs)
        clipped = params.train_clipped.model_copy(update={"clip_norm": 0.01})
        return params.model_copy(update={"train_clipped": clipped})

    monkeypatch.setattr(equivalence, "comparable", with_a_finite_clip)
    assert equivalence.main(argv) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "equivalence: NOT proven"
