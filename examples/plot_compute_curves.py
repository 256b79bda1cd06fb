"""Validation fPSNR against training hours for examples/run_study.sh chains: quality per unit of compute.

    python examples/plot_compute_curves.py OUT_DIR [OUT_DIR ...] --output curves.png

Each OUT_DIR is one run_study.sh chain (examples/compare_model_sizes.sh makes one per model size): pretrained/ and
finetune_<init>_<fraction>/ run folders, logged to tensorboard. Two panels:
- LEMaRT pre-training: the run's validation fPSNR on its held-out LEMaRT composites against its training hours
  (train/hours: the time of data, composites, steps and checkpoints, validation left out; summed over resumes), with
  the input composites' fPSNR as a dotted line;
- fine-tuning: each fine-tuning run's validation fPSNR (run_finetune.py --validation_fraction) against the hours of
  pre-training plus fine-tuning (a LEMaRT-initialised run starts where its pre-training ended), with the held-out
  composites' fPSNR (OUT_DIR/eval_composite, when run_eval.py scored the same split) as a dotted line.
Prints one line per run: its steps, hours and last validation fPSNR. Needs tensorboard and matplotlib (the dev extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from summarize_study import model_label

from lemart_hf.training.tensorboard_logs import read_scalars


def validation_curve(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, training hours, validation fPSNR) of the run folder ``run``, at each validation step; hours between
    two logged steps are interpolated."""
    logged = read_scalars(run, ["val/fpsnr", "train/hours"])
    validation, hours = logged["val/fpsnr"], logged["train/hours"]
    if not validation or not hours:
        raise SystemExit(f"plot_compute_curves.py: error: {run} logged no val/fpsnr or train/hours to tensorboard")
    steps = np.array(sorted(validation))
    logged_steps = np.array(sorted(hours))
    at = np.interp(steps, np.concatenate([[0], logged_steps]), np.concatenate([[0.0], [hours[s] for s in logged_steps]]))
    return steps, at, np.array([validation[s] for s in steps])


def composite_fpsnr(folder: Path) -> float | None:
    """The input composites' fPSNR over all images of a run_eval.py baseline folder, or None."""
    path = folder / "results.json"
    return json.loads(path.read_text())["table"]["All"]["fpsnr"] if path.is_file() else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", type=Path, nargs="+")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (pretraining, finetuning) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, out_dir in enumerate(args.out_dirs):
        colour = colours[index % len(colours)]
        pretrained, offset = out_dir / "pretrained", 0.0
        if pretrained.is_dir():
            label = model_label(pretrained) if (pretrained / "model.safetensors").is_file() else out_dir.name
            steps, hours, fpsnr = validation_curve(pretrained)
            offset = hours[-1]
            pretraining.plot(hours, fpsnr, "o-", color=colour, label=label)
            print(f"{out_dir.name} pre-training: {steps[-1]} steps, {hours[-1]:.2f} h, validation fPSNR {fpsnr[-1]:.2f} dB")
            summary = pretrained / "train_results.json"
            if summary.is_file():
                baseline = json.loads(summary.read_text())["validation_composite_baseline"]["fpsnr"]
                pretraining.axhline(baseline, color=colour, linestyle=":", linewidth=1)
        for run in sorted(out_dir.glob("finetune_*")):
            init = run.name.split("_")[1]
            steps, hours, fpsnr = validation_curve(run)
            start = offset if init == "lemart" else 0.0
            label = model_label(run) if (run / "model.safetensors").is_file() else out_dir.name
            finetuning.plot(start + hours, fpsnr, "o-", color=colour, label=f"{label}, {run.name.removeprefix('finetune_')}")
            print(f"{out_dir.name} {run.name}: {steps[-1]} steps, {hours[-1]:.2f} h (+{start:.2f} h before), "
                  f"validation fPSNR {fpsnr[-1]:.2f} dB")  # fmt: skip
        baseline = composite_fpsnr(out_dir / "eval_composite")
        if baseline is not None:
            finetuning.axhline(baseline, color="grey", linestyle=":", linewidth=1)
    pretraining.set_title("LEMaRT pre-training (dotted: the input composites)")
    pretraining.set_ylabel("validation fPSNR (dB), LEMaRT composites")
    finetuning.set_title("fine-tuning (dotted: the input composites)")
    finetuning.set_ylabel("validation fPSNR (dB), held-out pairs")
    for axis in (pretraining, finetuning):
        axis.set_xlabel("training hours (pre-training + fine-tuning)" if axis is finetuning else "training hours")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=120)
    plt.close(figure)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
