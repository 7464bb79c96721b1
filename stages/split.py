"""DVC stage split: the last split.val_size training images validate; the test set stays apart."""

from trainstyles.pipeline.data import load_split, save_split, split_train
from trainstyles.pipeline.outputs import atomic_dir
from trainstyles.pipeline.params import load_params
from trainstyles.pipeline.stage import PREPARED_DIR, SPLIT_DIR, run_stage


def main() -> str:
    params = load_params().split
    train = load_split(PREPARED_DIR / "train").head(params.train_limit)
    test = load_split(PREPARED_DIR / "test").head(params.test_limit)
    train, val = split_train(train, params.val_size)
    with atomic_dir(SPLIT_DIR) as split_dir:
        for name, part in (("train", train), ("val", val), ("test", test)):
            save_split(part, split_dir / name)
    return f"wrote {SPLIT_DIR}/{{train,val,test}} ({len(train)} / {len(val)} / {len(test)} images)"


if __name__ == "__main__":
    run_stage(main, timed=True)
