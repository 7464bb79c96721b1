"""DVC stage prepare: find the four Fashion-MNIST IDX files, verify, decode to data/prepared/."""

from trainstyles.pipeline.data import find_source, load_raw, save_split
from trainstyles.pipeline.outputs import atomic_dir
from trainstyles.pipeline.stage import PREPARED_DIR, run_stage


def main() -> str:
    source = find_source()
    raw = load_raw(source)  # verifies all four files before anything is written
    with atomic_dir(PREPARED_DIR) as prepared:
        for part, split in raw.items():
            save_split(split, prepared / part)
    return (
        f"read 4 IDX files from {source}, SHA-256 verified; wrote {PREPARED_DIR}/"
        f"{{train,test}} ({len(raw['train'])} + {len(raw['test'])} images)"
    )


if __name__ == "__main__":
    run_stage(main, timed=True)
