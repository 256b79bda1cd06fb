#!/usr/bin/env python
"""bf16 vs fp32 training on CPU: the same short runs of both scripts, validation scores and speed side by side.

    python benchmarks/bf16_parity.py --data_dir ../shared/data --photos ../shared/data/photos --steps 150

For each script (LEMaRT pre-training on --photos; fine-tuning on --data_dir's HOutdoor + HDiverse train with a
held-out validation split) it trains the tiny preset three times: fp32 with seed 0, fp32 with seed 1 (the noise:
what changing only the seed does) and bf16 (`--mixed_precision bf16`, CPU autocast) with seed 0, then prints the
final validation PSNR / fPSNR of each, the bf16 - fp32 difference next to the seed-to-seed difference, and the
steps per second. bf16 is "within noise" when its difference is no larger than the seed's. Speed figures are only
meaningful on a quiet machine (nothing else on the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (("fp32", "no", 0), ("fp32 seed 1", "no", 1), ("bf16", "bf16", 0))


def run(script: str, args: list[str], precision: str, seed: int, output_dir: Path, threads: int) -> dict:
    command = [
        sys.executable, str(ROOT / "examples" / script), *args, "--mixed_precision", precision, "--seed", str(seed),
        "--output_dir", str(output_dir), "--report_to", "none", "--checkpointing_steps", "100000",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{script} ({precision}) failed:\n{result.stderr[-3000:]}")
    return json.loads((output_dir / "train_results.json").read_text())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="Holds HOutdoor/ and HDiverse/ (iHarmony4 layout).")
    parser.add_argument("--photos", required=True, help="A folder of unlabeled photos.")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    common = ["--model_config", "swinih-tiny", "--resolution", str(args.resolution), "--train_batch_size", "16",
              "--max_train_steps", str(args.steps), "--validation_steps", str(args.steps),
              "--dataloader_num_workers", "1"]  # fmt: skip
    scripts = {
        "pre-training": ("run_pretrain.py", [*common, "--train_dir", args.photos, "--num_validation_composites", "32"]),
        "fine-tuning": (
            "run_finetune.py",
            [*common, "--data_dir", args.data_dir, "--subsets", "HOutdoor", "HDiverse", "--validation_fraction", "0.1",
             "--skip_final_evaluation"],
        ),  # fmt: skip
    }
    table = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (script, script_args) in scripts.items():
            for label, precision, seed in RUNS:
                summary = run(script, script_args, precision, seed, Path(scratch) / f"{script}-{label}", args.threads)
                table[(name, label)] = {
                    "psnr": summary["validation"]["psnr"],
                    "fpsnr": summary["validation"]["fpsnr"],
                    "steps_per_s": summary["global_step"] / summary["train_seconds_this_invocation"],
                }
                print(f"{name:<13} {label:<12} {table[(name, label)]}", flush=True)
    print(f"\n{args.steps} steps of 16 at {args.resolution} px, swinih-tiny, {args.threads} threads\n")
    print("| script | fPSNR fp32 | fPSNR fp32 seed 1 | fPSNR bf16 | bf16 - fp32 | seed 1 - seed 0 | bf16 / fp32 speed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in scripts:
        a, b, c = (table[(name, label)] for label, _, _ in RUNS)
        print(
            f"| {name} | {a['fpsnr']:.2f} | {b['fpsnr']:.2f} | {c['fpsnr']:.2f} | {c['fpsnr'] - a['fpsnr']:+.2f} | "
            f"{b['fpsnr'] - a['fpsnr']:+.2f} | {c['steps_per_s'] / a['steps_per_s']:.2f}x |"
        )
    return table


if __name__ == "__main__":
    main()
