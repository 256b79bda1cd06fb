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
Only finished runs (with their train_results.json) are drawn; a run without validation logs is left out with a line.
Prints one line per run: its steps, training hours, whether it stopped early, and its last validation fPSNR. Needs
tensorboard and matplotlib (the dev extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from summarize_study import model_label

from lemart_hf.training.tensorboard_logs import read_scalars


def validation_curve(run: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(training hours, validation fPSNR) of the run folder ``run`` at each validation step, hours between two logged
    steps interpolated; None when the run logged no validation or no train/hours to tensorboard."""
    logged = read_scalars(run, ["val/fpsnr", "train/hours"])
    validation, hours = logged["val/fpsnr"], logged["train/hours"]
    if not validation or not hours:
        print(f"plot_compute_curves.py: {run} logged no val/fpsnr or train/hours to tensorboard: left out")
        return None
    steps = np.array(sorted(validation))
    logged_steps = np.array(sorted(hours))
    at = np.interp(steps, np.concatenate([[0], logged_steps]), np.concatenate([[0.0], [hours[s] for s in logged_steps]]))
    return at, np.array([validation[s] for s in steps])


def run_end(run: Path) -> tuple[dict, str]:
    """The run's train_results.json and a line on where it ended: steps, training hours, an early stop."""
    summary = json.loads((run / "train_results.json").read_text())
    stopped = f", STOPPED EARLY ({summary['stopped_early']})" if summary.get("stopped_early") else ""
    return summary, f"{summary['global_step']} of {summary['max_train_steps']} steps, {summary['train_hours']:.2f} h{stopped}"


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
        if (pretrained / "train_results.json").is_file():
            summary, end = run_end(pretrained)
            offset = summary["train_hours"]
            baseline = summary.get("validation_composite_baseline") or {}
            if "fpsnr" in baseline:
                pretraining.axhline(baseline["fpsnr"], color=colour, linestyle=":", linewidth=1)
            curve = validation_curve(pretrained)
            if curve is not None:
                pretraining.plot(*curve, "o-", color=colour, label=model_label(pretrained))
                print(f"{out_dir.name} pre-training: {end}, validation fPSNR {curve[1][-1]:.2f} dB")
        for run in sorted(path for path in out_dir.glob("finetune_*") if (path / "train_results.json").is_file()):
            _, end = run_end(run)
            start = offset if run.name.startswith("finetune_lemart") else 0.0
            curve = validation_curve(run)
            if curve is not None:
                label = f"{model_label(run)}, {run.name.removeprefix('finetune_')}"
                finetuning.plot(start + curve[0], curve[1], "o-", color=colour, label=label)
                print(f"{out_dir.name} {run.name}: {end} (+{start:.2f} h before), validation fPSNR {curve[1][-1]:.2f} dB")
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
