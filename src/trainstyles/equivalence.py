"""Proof that the styles are the same math, to the bit.

The tutorial says its ways of training give "the same numbers as fit(), within noise". With
the same seed, the same batches in the same order (data.EpochBatches) and the training-changing
callbacks off (EarlyStopping, ReduceLROnPlateau), they give exactly the same numbers: fit(), the
train_step override and the raw loop end with equal weights and equal per-epoch losses, and
train_clipped with an infinite clip norm equals train_step.

    python -m trainstyles.equivalence [--epochs 2] [--train-limit N]
"""

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from trainstyles import STYLES, StageError
from trainstyles.data import Split, load_split
from trainstyles.params import CallbackParams, Params, load_params
from trainstyles.resume import Backup
from trainstyles.stage import SPLIT_DIR
from trainstyles.styles import clipped, fit, raw, step
from trainstyles.training import train_on

TRAINERS = dict(zip(STYLES, (fit.train, step.train, raw.train, clipped.train), strict=True))
# (style, the style it must equal): the fit-based styles against fit(), the clip against none.
CLAIMS = (("train_step", "train_fit"), ("train_raw", "train_fit"), ("train_clipped", "train_step"))


def comparable(params: Params, epochs: int) -> Params:
    """The pipeline's params with every style on `epochs` epochs, nothing that changes training
    mid-run, and no clip: what is left to differ is only how each style writes the loop."""

    def callbacks_off(callbacks: CallbackParams) -> CallbackParams:
        return callbacks.model_copy(update={"early_stopping": None, "reduce_lr_on_plateau": None})

    return params.model_copy(
        update={
            "train_fit": params.train_fit.model_copy(
                update={"epochs": epochs, "callbacks": callbacks_off(params.train_fit.callbacks)}
            ),
            "train_step": params.train_step.model_copy(
                update={"epochs": epochs, "callbacks": callbacks_off(params.train_step.callbacks)}
            ),
            "train_raw": params.train_raw.model_copy(update={"epochs": epochs}),
            "train_clipped": params.train_clipped.model_copy(
                update={
                    "epochs": epochs,
                    "clip_norm": math.inf,
                    "callbacks": callbacks_off(params.train_clipped.callbacks),
                }
            ),
        }
    )


def train_every_style(params: Params, train_split: Split, val_split: Split, workdir: Path) -> dict:
    """Each style's final weights and per-epoch training losses."""
    results = {}
    for style, train in TRAINERS.items():
        backup = Backup(workdir / style, fingerprint="equivalence")
        model, history = train_on(train, params, train_split, val_split, backup, workdir / "logs")
        results[style] = (model.get_weights(), history["loss"])
    return results


def verdicts(results: dict) -> list[tuple[str, str, bool, bool]]:
    """For each claim: (style, reference, weights equal to the bit, per-epoch losses equal)."""
    return [
        (
            style,
            reference,
            bitwise_equal(results[style][0], results[reference][0]),
            results[style][1] == results[reference][1],
        )
        for style, reference in CLAIMS
    ]


def bitwise_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per style (default 2)")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only")
    args = parser.parse_args(argv)
    if args.epochs < 1 or (args.train_limit is not None and args.train_limit < 1):
        parser.error("--epochs and --train-limit must be positive")
    try:
        params = comparable(load_params(), args.epochs)
        train_split = load_split(SPLIT_DIR / "train").head(args.train_limit)
        val_split = load_split(SPLIT_DIR / "val")
    except FileNotFoundError as error:
        sys.exit(f"equivalence: error: {error.filename}: missing; run `dvc repro split` first")
    except StageError as error:
        sys.exit(f"equivalence: error: {error}")
    with tempfile.TemporaryDirectory(prefix="equivalence-") as workdir:
        results = train_every_style(params, train_split, val_split, Path(workdir))

    print(
        f"equivalence: {len(train_split)} training images, {args.epochs} epochs, "
        f"seed {params.seed}, EarlyStopping and ReduceLROnPlateau off"
    )
    for style, reference, same_weights, same_losses in verdicts(results):
        name = f"{style} (clip_norm=inf)" if style == "train_clipped" else style
        print(
            f"  {name:>29} {'≡' if same_weights and same_losses else '≠'} {reference:<10}  "
            f"weights {'bitwise equal' if same_weights else 'DIFFER'}; per-epoch loss "
            f"{'equal' if same_losses else 'DIFFERS'}: {results[style][1]}"
        )
    proven = all(weights and losses for _, _, weights, losses in verdicts(results))
    print(f"equivalence: {'proven' if proven else 'NOT proven'}")
    return 0 if proven else 1


if __name__ == "__main__":
    sys.exit(main())
