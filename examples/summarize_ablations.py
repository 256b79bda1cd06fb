"""Collect a `reproduce_ablations.sh` output folder into its three tables and the label-fraction plot.

    python examples/summarize_ablations.py OUT_DIR

Reads OUT_DIR/eval_<baseline>/results.json (the model-free rows) and
OUT_DIR/seed<S>/<strategy>_<ratio>/eval_finetune_<init>_<fraction>/results.json (run_eval.py's output), prints
Markdown (mask strategy, mask ratio, label fraction; each metric per test set, averaged over the seeds that finished,
with every seed's fPSNR on all test images so the reader sees the noise) and writes OUT_DIR/label_fraction_curve.png:
fPSNR against the label fraction on a log axis, LEMaRT and scratch, the composite as a line, one panel per test set.
Rows whose runs have not finished yet are left out; the plot needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from statistics import mean

from summarize_study import BASELINES

RUN = re.compile(r"^seed(\d+)/(random|grid|block)_([0-9.]+)/eval_finetune_(lemart|scratch)_([0-9.]+)$")
METRICS = (("mse", "MSE", ".1f"), ("psnr", "PSNR", ".2f"), ("fmse", "fMSE", ".1f"), ("fpsnr", "fPSNR", ".2f"))
DEFAULT_VARIANT = ("random", 0.5)
ABLATION_FRACTION = 0.1


def load_table(folder: Path) -> dict[str, dict]:
    """run_eval.py's table of one folder: {subset or "All": {"mse", "psnr", "fmse", "fpsnr", "images"}}."""
    return json.loads((folder / "results.json").read_text())["table"]


def collect(out_dir: Path) -> dict[tuple, dict[int, dict]]:
    """{(init, strategy, ratio, fraction): {seed: table}} of every finished fine-tuning evaluation."""
    runs: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for results in sorted(out_dir.glob("seed*/*/eval_finetune_*/results.json")):
        match = RUN.match(results.parent.relative_to(out_dir).as_posix())
        if match:
            seed, strategy, ratio, init, fraction = match.groups()
            runs[(init, strategy, float(ratio), float(fraction))][int(seed)] = load_table(results.parent)
    return runs


def header(subsets: list[str]) -> list[str]:
    columns = [f"{subset} {name}" for subset in subsets for _, name, _ in METRICS]
    return [
        "| Method | " + " | ".join(columns) + " | fPSNR, All, per seed |",
        "| --- |" + " ---: |" * (len(columns) + 1),
    ]


def row(label: str, tables: dict[int, dict], subsets: list[str], per_seed: bool = True) -> str:
    """One Markdown row: each metric averaged over the seeds; the last cell lists each seed's fPSNR on All."""
    cells = [
        format(mean(table[subset][key] for table in tables.values()), spec)
        for subset in subsets
        for key, _, spec in METRICS
    ]
    seeds = " / ".join(f"{tables[seed]['All']['fpsnr']:.2f} (seed {seed})" for seed in sorted(tables))
    return f"| {label} | " + " | ".join(cells) + f" | {seeds if per_seed else ''} |"


def tables(runs: dict, baselines: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(Markdown lines, test subsets) of the three ablation tables."""
    subsets = sorted({s for seeds in runs.values() for t in seeds.values() for s in t if s != "All"})
    subsets = subsets or sorted({s for t in baselines.values() for s in t if s != "All"})
    reference = [row(label, {0: table}, subsets, per_seed=False) for label, table in baselines.items()]
    scratch = runs.get(("scratch", *DEFAULT_VARIANT, ABLATION_FRACTION))
    scratch_row = [row(f"From scratch, {ABLATION_FRACTION:.0%} labels", scratch, subsets)] if scratch else []
    lines = []

    lines += ["### Mask strategy (paper Table 5), ratio 0.5, fine-tuned at 10% of the labels", ""] + header(subsets)
    lines += reference + scratch_row
    for strategy in ("random", "grid", "block"):
        if found := runs.get(("lemart", strategy, 0.5, ABLATION_FRACTION)):
            lines.append(row(f"LEMaRT, {strategy} masks", found, subsets))

    lines += ["", "### Mask ratio (paper Table 6), random masks, fine-tuned at 10% of the labels", ""] + header(subsets)
    lines += reference + scratch_row
    for ratio in (0.3, 0.5, 0.7):
        if found := runs.get(("lemart", "random", ratio, ABLATION_FRACTION)):
            lines.append(row(f"LEMaRT, ratio {ratio}", found, subsets))

    lines += ["", "### Label fraction (paper Figure 6), random masks at ratio 0.5", ""] + header(subsets) + reference
    fractions = sorted({key[3] for key in runs if key[1:3] == DEFAULT_VARIANT})
    gains = []
    for fraction in fractions:
        pair = {init: runs.get((init, *DEFAULT_VARIANT, fraction)) for init in ("scratch", "lemart")}
        for init, found in pair.items():
            if found:
                name = "LEMaRT pre-trained" if init == "lemart" else "from scratch"
                lines.append(row(f"{fraction:.0%} labels, {name}", found, subsets))
        if all(pair.values()):
            common = sorted(set(pair["lemart"]) & set(pair["scratch"]))
            gain = mean(pair["lemart"][s]["All"]["fpsnr"] - pair["scratch"][s]["All"]["fpsnr"] for s in common)
            gains.append(f"{fraction:.0%}: {gain:+.2f}")
    if gains:
        lines += ["", "LEMaRT - scratch, fPSNR on all test images (dB): " + ", ".join(gains) + "."]
    return lines, subsets


def plot_curve(runs: dict, baselines: dict[str, dict], subsets: list[str], path: Path) -> bool:
    """fPSNR vs label fraction (log axis) for LEMaRT and scratch, one panel per test subset; False if no curve."""
    fractions = sorted({key[3] for key in runs if key[1:3] == DEFAULT_VARIANT})
    if not fractions:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(subsets), figsize=(5 * len(subsets), 3.8), squeeze=False)
    for axis, subset in zip(axes[0], subsets):
        for init, label, style in (("lemart", "LEMaRT pre-trained", "o-"), ("scratch", "from scratch", "s--")):
            points = [
                (fraction, mean(t[subset]["fpsnr"] for t in runs[key].values()))
                for fraction in fractions
                if (key := (init, *DEFAULT_VARIANT, fraction)) in runs
            ]
            if points:
                axis.plot(*zip(*points), style, label=label)
        for name, table in baselines.items():
            axis.axhline(table[subset]["fpsnr"], color="grey", linestyle=":", linewidth=1)
            axis.annotate(name.split(" (")[0], (fractions[0], table[subset]["fpsnr"]), fontsize=8, color="grey",
                          textcoords="offset points", xytext=(2, 3))  # fmt: skip
        axis.set_xscale("log")
        axis.set_xticks(fractions, [f"{fraction:.0%}" for fraction in fractions])
        axis.minorticks_off()
        axis.set_xlabel("labelled training pairs")
        axis.set_ylabel("fPSNR (dB), test")
        images = next(table[subset]["images"] for seeds in runs.values() for table in seeds.values())
        axis.set_title(f"{subset} test ({images} images)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    out_dir = parser.parse_args().out_dir

    runs = collect(out_dir)
    baselines = {
        label: load_table(out_dir / folder)
        for folder, label in BASELINES.items()
        if (out_dir / folder / "results.json").is_file()
    }
    if not runs and not baselines:
        parser.error(f"no results under {str(out_dir)!r} (expected eval_*/results.json, seed*/*/eval_*/results.json)")
    lines, subsets = tables(runs, baselines)
    print("\n".join(lines))
    if plot_curve(runs, baselines, subsets, out_dir / "label_fraction_curve.png"):
        print(f"\n![label-fraction curve]({out_dir / 'label_fraction_curve.png'})")
    print(
        "\nTest splits, default protocol: 256x256, antialiased bilinear, binary mask, peak 255; "
        "means over images, then over seeds."
    )


if __name__ == "__main__":
    main()
