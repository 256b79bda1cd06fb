#!/usr/bin/env python
"""The real pre-training loop on CPU, split per step: data loading, LEMaRT compositing, and the model step.

Runs `examples/run_pretrain.py` itself (swinih-tiny, batch 16, bf16 autocast by default) for a short while at each
size, logging every step, and reads back the per-step timings the script records for its trackers
(`perf/data_seconds_per_step`, `perf/composite_seconds_per_step`, `perf/step_seconds_per_step`; the step is forward,
backward and optimizer). Reported per size, as medians over the steps after a warm-up:

- end-to-end / model-only: the rate of whole steps (data + compositing + step) as a share of the rate the model step
  alone would run at; 100% means the data never waits on anything;
- the compositing share and the data share of a whole step.

    python benchmarks/bench_training_loop.py --train_dir ../shared/data/photos              # 64 and 128 px
    python benchmarks/bench_training_loop.py --train_dir ../shared/data/photos --workers 0,1 --sizes 128

Measure on a quiet machine: the loop's own parts share the CPU (a DataLoader worker decodes beside the step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("data", "composite", "step")


def run_pretrain(args, size: int, workers: int, output_dir: str) -> float:
    """One short run_pretrain.py run; returns its wall-clock seconds."""
    command = [
        sys.executable, str(REPO / "examples" / "run_pretrain.py"),
        "--train_dir", *args.train_dir, "--model_config", args.model_config,
        "--resolution", str(size), "--train_batch_size", str(args.batch),
        "--max_train_steps", str(args.warmup + args.steps), "--mixed_precision", args.mixed_precision,
        "--dataloader_num_workers", str(workers), "--logging_steps", "1", "--validation_steps", "0",
        "--num_validation_images", "0", "--checkpointing_steps", "1000000", "--report_to", "tensorboard",
        "--output_dir", output_dir, "--seed", "0",
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)  # the script sets OMP_WAIT_POLICY itself
    if result.returncode:
        raise SystemExit(f"bench_training_loop.py: run_pretrain.py failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def read_timings(output_dir: str) -> dict[str, list[float]]:
    """{part: seconds per step, in step order} from the run's tensorboard event files."""
    from lemart_hf.training.tensorboard_logs import read_scalars

    logged = read_scalars(output_dir, [f"perf/{part}_seconds_per_step" for part in PARTS])
    series = {part: logged[f"perf/{part}_seconds_per_step"] for part in PARTS}
    return {part: [values[step] for step in sorted(values)] for part, values in series.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_dir", nargs="+", required=True, help="photo folder(s), as run_pretrain.py takes")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--workers", default="1", help="DataLoader workers to compare, e.g. 0,1")
    parser.add_argument("--model_config", default="swinih-tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16"])
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the medians")
    parser.add_argument("--steps", type=int, default=30, help="steps measured")
    args = parser.parse_args(argv)

    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for workers in [int(w) for w in args.workers.split(",")]:
            with tempfile.TemporaryDirectory(prefix="bench_training_loop_") as output_dir:
                wall = run_pretrain(args, size, workers, output_dir)
                timings = read_timings(output_dir)
            measured = {part: values[args.warmup :] for part, values in timings.items()}
            if not all(measured.values()):
                raise SystemExit(f"bench_training_loop.py: no per-step timings were logged at {size} px")
            median = {part: statistics.median(values) for part, values in measured.items()}
            whole = sum(median.values())
            rows.append((size, workers, median, whole, wall, len(measured["step"])))
            print(f"# {size} px, {workers} workers: {len(measured['step'])} steps measured, run {wall:.0f} s", flush=True)

    print(
        f"\n{args.model_config}, batch {args.batch}, {args.mixed_precision}, threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'all')}; medians over the steps after {args.warmup} warm-up steps"
    )
    header = (
        f"{'size':>5} {'workers':>7} {'data ms':>8} {'compose ms':>10} {'step ms':>8} {'whole ms':>9} "
        f"{'end-to-end / model-only':>24} {'compositing share':>18} {'data share':>11}"
    )
    print(header)
    print("-" * len(header))
    for size, workers, median, whole, _, _ in rows:
        print(
            f"{size:5d} {workers:7d} {1e3 * median['data']:8.1f} {1e3 * median['composite']:10.1f} "
            f"{1e3 * median['step']:8.1f} {1e3 * whole:9.1f} {100 * median['step'] / whole:23.1f}% "
            f"{100 * median['composite'] / whole:17.1f}% {100 * median['data'] / whole:10.1f}%"
        )
    return rows


if __name__ == "__main__":
    main()
