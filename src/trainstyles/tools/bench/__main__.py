"""`make bench`: how fast each style trains and the pipeline runs, against its peers and the limit.

Three yardsticks, measured in the same run on the same machine (docs/bench.md: how to read them):
- the peers: the same MLP, data, batch size and optimizer in JAX (a jitted step per batch, and
  the epoch as one lax.scan) and in a plain PyTorch eager loop, run interleaved with the styles
  so that each style's ratio compares runs minutes apart at most; each variant's dispatches (host
  round trips) per epoch, counted;
- the limit: the FLOPs of an epoch divided by the machine's measured matrix-multiply throughput
  on as many threads as the styles train with;
- the pipeline: each stage's wall time and peak resident memory in a full `dvc repro -f`, and
  the time of a `dvc repro` with nothing to do.
Each style is timed as params.yaml trains it and again without XLA (`train.jit_compile: false`).

    python -m trainstyles.tools.bench [--epochs 3] [--repeats 3] [--no-pipeline] [--xla-only]
                                      [--out F]
    python -m trainstyles.tools.bench --page      (docs/bench.md's tables from bench/results.json)

Either way docs/bench.md's tables are rewritten from bench/results.json, so nobody types a
figure; results written elsewhere (--out) leave the page alone unless --doc names one.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

from trainstyles.pipeline.machine import fingerprint
from trainstyles.pipeline.params import load_params
from trainstyles.tools.bench.figures import (
    JAX_SCAN,
    JAX_STEP,
    PEER,
    PEERS,
    summarise,
    variants,
)
from trainstyles.tools.bench.limit import gemm_threads, limit_figures
from trainstyles.tools.bench.stages import pipeline_figures
from trainstyles.tools.bench.tables import (
    RESULTS,
    epoch_table,
    pipeline_table,
    profile_table,
    write_page,
)
from trainstyles.tools.bench.timing import (
    epoch_figures,
    jax_missing,
    peer_missing,
    timed_run,
)
from trainstyles.tools.machines import kind_name
from trainstyles.tools.pages import BENCH_PAGE


def machine(intra_op_threads: int) -> dict:
    """What the figures were measured on, and how busy it was when the bench started: the
    fingerprint a trainer records, and its kind: the CPU's, since the bench's own process (the
    limit's GEMMs, the no-op `dvc repro`) uses no GPU."""
    here = fingerprint(intra_op_threads)
    return {
        "fingerprint": here,
        "kind": kind_name(here),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def versions(jax: bool, torch: str | None) -> dict:
    """The packages that did the work, read from their metadata (no TensorFlow in this process);
    torch's, from its own venv, as the peer reported it."""
    names = ["tensorflow", "keras", "numpy"] + (["jax", "jaxlib"] if jax else [])
    found = {name: importlib.metadata.version(name) for name in names}
    return found | ({"torch": torch} if torch else {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the dvc repro timings")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    parser.add_argument(
        "--page", action="store_true", help="measure nothing: rewrite the page from --out"
    )
    parser.add_argument(
        "--doc", type=Path, help=f"the page to rewrite ({BENCH_PAGE} when --out is {RESULTS})"
    )
    parser.add_argument(
        "--xla-only", action="store_true", help="skip the styles' timings without XLA"
    )
    parser.add_argument(
        "--run", choices=variants(without_xla=True, peers=PEERS), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    # Results written elsewhere (a trial of a lever) leave the page, which shows RESULTS, alone.
    page = args.doc or (BENCH_PAGE if args.out == RESULTS else None)
    if args.run:
        print(json.dumps(timed_run(args.run, args.epochs)))
        return 0
    if args.page:
        if not args.out.is_file():
            print(f"bench: error: no {args.out}: run `make bench` first", file=sys.stderr)
            return 1
        return report_page(json.loads(args.out.read_text()), args.out, page)

    def say(line: str) -> None:
        print(f"bench: {line}", flush=True)

    params = load_params()
    missing_peer, missing_jax = peer_missing(), jax_missing()
    peers = ([] if missing_jax else [JAX_STEP, JAX_SCAN]) + ([] if missing_peer else [PEER])
    results = {"machine": machine(params.train.intra_op_threads)}
    cpu_kind = results["machine"]["kind"]
    # This process's GEMMs (the limit's, the machine's rate) on the styles' threads; each timed
    # variant's own process is not held by it.
    with gemm_threads(params.train.intra_op_threads) as blas:
        say(f"the limit's GEMMs: numpy on {blas}")
        pipeline = None if args.no_pipeline else pipeline_figures(Path.cwd(), say, cpu_kind)
        measured = epoch_figures(args.repeats, args.epochs, say, not args.xla_only, peers)
        measured |= {"peer_missing": missing_peer, "jax_missing": missing_jax}
        # A shared machine runs at the speed its neighbours leave it: the square GEMM's rate
        # before the pipeline and at each repeat shows how fast it was, and the best of them is
        # the limit's.
        gemm_seen = ([pipeline["gemm_flops_per_second"]] if pipeline else []) + measured[
            "gemm_rates"
        ]
        limit = limit_figures(
            params.model,
            measured["train_size"],
            measured["val_size"],
            params.train.batch_size,
            max(gemm_seen),
            blas,
        )
    results |= summarise(params, measured, limit | {"measured_on": cpu_kind})
    results["pipeline"] = pipeline
    torch = measured.get("torch_version")
    results["machine"] |= versions(not missing_jax, torch) | {
        "gemm_gflops_seen": [rate / 1e9 for rate in gemm_seen]
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{epoch_table(results)}")
    print(f"\n{profile_table(results)}")
    seen = ", ".join(f"{rate:.0f}" for rate in results["machine"]["gemm_gflops_seen"])
    print(f"square GEMM rates during the run, in order: {seen} GFLOP/s")
    if pipeline:
        print(f"\n{pipeline_table(results)}")
    print(f"\nwrote {args.out}")
    return report_page(results, args.out, page)


def report_page(results: dict, source: Path, page: Path | None) -> int:
    if page is None:
        return 0
    if not write_page(results, page, source):
        print(f"bench: error: {page} has no <!-- bench --> block to write", file=sys.stderr)
        return 1
    print(f"bench: wrote {page}'s tables from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
