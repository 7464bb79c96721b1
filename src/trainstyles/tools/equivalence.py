"""Proof that the styles are the same math, to the bit.

The tutorial says its ways of training give "the same numbers as fit(), within noise". With
the same seed, the same batches in the same order (data.EpochBatches) and the training-changing
callbacks off (EarlyStopping, ReduceLROnPlateau), they give exactly the same numbers. Each style
module that names a style it must equal (`SAME_MATH_AS`) is a claim: trained with its own
settings at their neutral values (`NEUTRAL_SETTINGS`, such as an infinite clip norm), it must
end with the same weights, to the bit, and the same per-epoch losses.

    python -m trainstyles.tools.equivalence [--epochs 2] [--train-limit N]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from trainstyles import StageError
from trainstyles.pipeline.data import Split, load_split
from trainstyles.pipeline.gpu import use_devices
from trainstyles.pipeline.params import STYLES, Params, load_params
from trainstyles.pipeline.resume import Backup
from trainstyles.pipeline.stage import SPLIT_DIR
from trainstyles.pipeline.styles import style_module
from trainstyles.pipeline.training import train_on

MODULES = {style: style_module(style) for style in STYLES}
# (style, the style it must equal), in the order of the styles.
CLAIMS = tuple(
    (style, module.SAME_MATH_AS)
    for style, module in MODULES.items()
    if getattr(module, "SAME_MATH_AS", None)
)


def neutral_settings(style: str) -> dict:
    return getattr(MODULES[style], "NEUTRAL_SETTINGS", {})


def comparable(params: Params, epochs: int) -> Params:
    """The pipeline's params with every style on `epochs` epochs, nothing that changes training
    mid-run, and each style's own settings neutral: what is left to differ is only how each
    style writes the loop."""

    def comparable_section(style: str):
        section = getattr(params, style)
        update = {"epochs": epochs, **neutral_settings(style)}
        if callbacks := getattr(section, "callbacks", None):
            off = {"early_stopping": None, "reduce_lr_on_plateau": None}
            update["callbacks"] = callbacks.model_copy(update=off)
        return section.model_copy(update=update)

    return params.model_copy(update={style: comparable_section(style) for style in STYLES})


def train_every_style(params: Params, train_split: Split, val_split: Split, workdir: Path) -> dict:
    """Each style's final weights and per-epoch training losses."""
    results = {}
    for style, module in MODULES.items():
        backup = Backup(workdir / style, fingerprint="equivalence")
        model, history = train_on(
            module.train, params, train_split, val_split, backup, workdir / "logs"
        )
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
        use_devices(params.train.device)  # a GPU host proves it on its GPU (docs/gpu.md)
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
        name = style + "".join(
            f" ({key}={value})" for key, value in neutral_settings(style).items()
        )
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
