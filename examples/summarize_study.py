"""Collect the HOutdoor study's evaluations (run_eval.py results.json files) into one Markdown table.

    python examples/summarize_study.py OUT_DIR

Rows: the two baselines, then each fine-tuned model (LEMaRT / scratch at each label fraction); columns: MSE, PSNR,
fMSE, fPSNR over all test images; for each label fraction, the LEMaRT - scratch difference in dB.
"""

import argparse
import json
import re
from pathlib import Path

BASELINES = {"eval_composite": "Composite (input unchanged)", "eval_color_transfer": "Colour transfer (Reinhard, Lab)"}
RUN = re.compile(r"eval_finetune_(lemart|scratch)_([0-9.]+)$")


def load_all_row(folder: Path) -> dict:
    table = json.loads((folder / "results.json").read_text())["table"]
    return table["All"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    out_dir = parser.parse_args().out_dir

    rows, runs = [], {}
    for folder, label in BASELINES.items():
        if (out_dir / folder / "results.json").is_file():
            rows.append((label, load_all_row(out_dir / folder)))
    for folder in sorted(out_dir.glob("eval_finetune_*")):
        match = RUN.match(folder.name)
        if match and (folder / "results.json").is_file():
            init, fraction = match.groups()
            runs[(float(fraction), init)] = load_all_row(folder)
    for (fraction, init), row in sorted(runs.items(), key=lambda item: (item[0][0], item[0][1] != "scratch")):
        name = "LEMaRT pre-trained" if init == "lemart" else "from scratch"
        rows.append((f"SwinIH-tiny, {name}, {fraction:.0%} labels", row))

    print("| Method | MSE | PSNR (dB) | fMSE | fPSNR (dB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, row in rows:
        print(f"| {label} | {row['mse']:.2f} | {row['psnr']:.2f} | {row['fmse']:.1f} | {row['fpsnr']:.2f} |")
    gains = []
    for fraction in sorted({f for f, _ in runs}):
        if (fraction, "lemart") in runs and (fraction, "scratch") in runs:
            lemart, scratch = runs[(fraction, "lemart")], runs[(fraction, "scratch")]
            gains.append(
                f"{fraction:.0%} labels: LEMaRT - scratch = {lemart['psnr'] - scratch['psnr']:+.2f} dB PSNR, "
                f"{lemart['fpsnr'] - scratch['fpsnr']:+.2f} dB fPSNR"
            )
    if gains:
        print("\n" + "; ".join(gains) + ".")
    images = rows[0][1]["images"] if rows else 0
    print(f"\nHOutdoor test ({images} images), default protocol: 256x256, antialiased bilinear, binary mask, peak 255.")


if __name__ == "__main__":
    main()
