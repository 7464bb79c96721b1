"""The image's smoke run (its `smoke` build stage): the pipeline as a user runs it, on tiny params.

A fresh git repository made from the baked checkout the way the end-to-end test makes one, its
params shrunk further to one epoch per style; `dvc repro` must then leave every declared output
and a clean `dvc status`, checked by the end-to-end test's own assertions.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_pipeline import (
    test_every_declared_output_exists,
    test_pipeline_is_up_to_date_after_repro,
)

from conftest import SMALL, copy_repo, dvc
from trainstyles import STYLES

ONE_EPOCH = {**SMALL, **{style: {"epochs": 1} for style in STYLES}}


def main() -> None:
    repo = copy_repo(Path(tempfile.mkdtemp(prefix="smoke-")), ONE_EPOCH)
    print(dvc(repo, "repro"), flush=True)
    test_every_declared_output_exists(repo)
    test_pipeline_is_up_to_date_after_repro(repo)
    print(f"smoke: every declared output written, dvc status clean, in {repo}")


if __name__ == "__main__":
    main()
