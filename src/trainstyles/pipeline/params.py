"""params.yaml → typed, validated objects: read once by each stage and passed down."""

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from ruamel.yaml import YAML, YAMLError

from trainstyles import StageError

Monitor = Literal["loss", "accuracy", "val_loss", "val_accuracy"]


class Section(BaseModel):
    # strict: a quoted "128" is a typo to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SplitParams(Section):
    val_size: PositiveInt
    train_limit: PositiveInt | None = None  # first N training images only (smoke runs); None = all
    test_limit: PositiveInt | None = None


class ModelParams(Section):
    hidden_units: list[PositiveInt]
    num_classes: PositiveInt
    # 0: the units as initialized; N: shuffled by seed N, which changes only the rounding.
    hidden_order: int = Field(ge=0)


class TrainParams(Section):
    """What every style shares, so that the styles differ only in how they train."""

    batch_size: PositiveInt
    learning_rate: PositiveFloat
    # XLA in every style: "cpu" where the steps run on one CPU, whose re-runs prove XLA's bits
    # repeat; true everywhere; false nowhere. XLA turns TensorFlow's op determinism off
    # (determinism.py). Never Keras' own "auto", which would decide without a word.
    jit_compile: Literal["cpu", True, False]
    # Training steps per call into the compiled graph: fewer Python round trips, same math.
    steps_per_execution: PositiveInt
    # Threads that split one op: the split changes the rounding (see determinism.py).
    intra_op_threads: PositiveInt
    # What trains: auto (a GPU where TensorFlow sees one), cpu, or gpu (refused without one).
    # A GPU adds in another order than a CPU, so the choice changes the bits, as a param should.
    device: Literal["auto", "cpu", "gpu"]


class DistributeParams(Section):
    """Which tf.distribute strategy trains; the global batch stays `train.batch_size`."""

    strategy: Literal["none", "mirrored", "multi_worker"]
    # mirrored on a machine without a GPU: split the CPU into N logical devices (for tests).
    logical_cpus: PositiveInt | None = None

    @field_validator("logical_cpus")
    @classmethod
    def only_when_mirrored(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("strategy") != "mirrored":
            raise ValueError("only strategy 'mirrored' splits the CPU")
        return value


class EarlyStoppingParams(Section):
    monitor: Monitor
    patience: int = Field(ge=0)
    restore_best_weights: bool


class CheckpointParams(Section):
    monitor: Monitor
    mode: Literal["min", "max"]


class ReduceLROnPlateauParams(Section):
    monitor: Monitor
    factor: float = Field(gt=0, lt=1)
    patience: int = Field(ge=0)
    min_lr: float = Field(ge=0)


class TensorBoardParams(Section):
    histogram_freq: int = Field(ge=0)


class CallbackParams(Section):
    """The tutorial's callback zoo; a callback left out of params.yaml is not used."""

    checkpoint: CheckpointParams
    tensorboard: TensorBoardParams
    early_stopping: EarlyStoppingParams | None = None
    reduce_lr_on_plateau: ReduceLROnPlateauParams | None = None


class FitStyleParams(Section):
    epochs: PositiveInt
    callbacks: CallbackParams


class RawStyleParams(Section):
    epochs: PositiveInt


class ClippedStyleParams(FitStyleParams):
    clip_norm: PositiveFloat


class SharedParams(Section):
    """The sections every style shares."""

    seed: int
    split: SplitParams
    model: ModelParams
    train: TrainParams
    distribute: DistributeParams

    @field_validator("distribute")
    @classmethod
    def one_step_per_call_when_distributed(
        cls, value: DistributeParams, info: ValidationInfo
    ) -> DistributeParams:
        # Measured: Keras 3.15's fit() with several steps per call fails under MirroredStrategy
        # ("You must feed a value for placeholder tensor"), so a strategy takes one step a call.
        train = info.data.get("train")
        if value.strategy != "none" and train and train.steps_per_execution != 1:
            raise ValueError(
                f"train.steps_per_execution = {train.steps_per_execution} must be 1 under a "
                "tf.distribute strategy (Keras 3.15's multi-step fit() fails there)"
            )
        return value


class Params(SharedParams):
    """All of params.yaml. Its sections after the shared ones are the styles, in the order they
    are shown: this is the one list of styles (STYLES) that the stages, evaluate, the report,
    the equivalence proof, the bench and the tests read. A style `train_<name>` is its params
    section here, its module `trainstyles/pipeline/styles/<name>.py` and its stage in dvc.yaml."""

    train_fit: FitStyleParams
    train_step: FitStyleParams
    train_raw: RawStyleParams
    train_clipped: ClippedStyleParams


STYLES = tuple(name for name in Params.model_fields if name not in SharedParams.model_fields)


def check_style(style: str) -> None:
    if style not in STYLES:
        raise StageError(f"no style {style!r}; the styles are {', '.join(STYLES)}")


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Parse params.yaml as DVC does (YAML 1.2, so 1e-5 is a number) and validate all of it."""
    try:
        raw = YAML(typ="safe", pure=True).load(path)
    except (OSError, YAMLError) as error:
        raise StageError(f"{path}: cannot read: {' '.join(str(error).split())}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = f"{path}: {key}"
        if first["type"] != "missing":
            problem += f" = {first['input']!r}"
        raise StageError(f"{problem}: {first['msg'].lower()}") from None
