"""Collect the evaluations of examples/run_study.sh chains (run_eval.py results.json files) into one Markdown table.

    python examples/summarize_study.py OUT_DIR [OUT_DIR ...]

OUT_DIR is a run_study.sh output folder; several (one per architecture or model size: examples/compare_model_sizes.sh)
give one table. Rows: the two baselines (from the first folder that has them), then each fine-tuned model (LEMaRT /
scratch at each label fraction), named by its architecture and size; columns: MSE, PSNR, fMSE, fPSNR over all the
images scored (the test splits, or the held-out validation photos with EVAL_ARGS="--split train --held_out_fraction
F"); then, per architecture and label fraction, the LEMaRT - scratch difference in dB. The footer says what was
scored; results of different splits in one table are an error.
"""

import argparse
import json
import math
import re
from pathlib import Path

BASELINES = {"eval_composite": "Composite (input unchanged)", "eval_color_transfer": "Colour transfer (Reinhard, Lab)"}
RUN = re.compile(r"eval_finetune_(lemart|scratch)_([0-9.]+)$")


def load_results(folder: Path) -> tuple[dict, str]:
    """The "All" row of a run_eval.py results.json in ``folder`` and what it scored, e.g. "HOutdoor test" or
    "HDiverse + HOutdoor train, the 10% of its photos held out for validation"."""
    results = json.loads((folder / "results.json").read_text())
    subsets = " + ".join(name for name in results["table"] if name != "All")
    held_out = results.get("held_out_fraction")
    where = f", the {held_out:.0%} of its photos held out for validation" if held_out else ""
    return results["table"]["All"], f"{subsets} {results['split']}{where}"


def model_label(model_dir: Path) -> str:
    """E.g. "SwinIH-tiny (2.1 M)": the architecture's name and the parameter count of the saved model."""
    from safetensors import safe_open

    from lemart_hf.models.architectures import ARCHITECTURES

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    names = {a.config_class.model_type: a.display_name for a in ARCHITECTURES.values()}
    with safe_open(model_dir / "model.safetensors", "pt") as f:
        parameters = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return f"{names.get(model_type, model_type)} ({parameters / 1e6:.1f} M)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", type=Path, nargs="+")
    out_dirs = parser.parse_args().out_dirs

    rows, gains, scored = [], [], set()
    for folder, label in BASELINES.items():
        found = [d / folder for d in out_dirs if (d / folder / "results.json").is_file()]
        if found:
            row, what = load_results(found[0])
            rows.append((label, row))
            scored.add(what)
    for out_dir in out_dirs:
        runs, labels = {}, {}
        for folder in sorted(out_dir.glob("eval_finetune_*")):
            match = RUN.match(folder.name)
            if match and (folder / "results.json").is_file():
                init, fraction = match.groups()
                runs[(float(fraction), init)], what = load_results(folder)
                scored.add(what)
                labels[(float(fraction), init)] = model_label(out_dir / folder.name.removeprefix("eval_"))
        for (fraction, init), row in sorted(runs.items(), key=lambda item: (item[0][0], item[0][1] != "scratch")):
            name = "LEMaRT pre-trained" if init == "lemart" else "from scratch"
            rows.append((f"{labels[(fraction, init)]}, {name}, {fraction:.0%} labels", row))
        for fraction in sorted({f for f, _ in runs}):
            if (fraction, "lemart") in runs and (fraction, "scratch") in runs:
                lemart, scratch = runs[(fraction, "lemart")], runs[(fraction, "scratch")]
                gains.append(
                    f"{labels[(fraction, 'lemart')].split(' (')[0]}, {fraction:.0%} labels: LEMaRT - scratch = "
                    f"{lemart['psnr'] - scratch['psnr']:+.2f} dB PSNR, {lemart['fpsnr'] - scratch['fpsnr']:+.2f} dB fPSNR"
                )

    if len(scored) > 1:
        raise SystemExit(f"summarize_study.py: error: the results scored different images: {sorted(scored)}")
    print("| Method | MSE | PSNR (dB) | fMSE | fPSNR (dB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, row in rows:
        print(f"| {label} | {row['mse']:.2f} | {row['psnr']:.2f} | {row['fmse']:.1f} | {row['fpsnr']:.2f} |")
    if gains:
        print("\n" + "\n".join(f"- {gain}" for gain in gains))
    if not rows:
        return
    images = rows[0][1]["images"]
    print(f"\n{scored.pop()} ({images} images), default protocol: 256x256, antialiased bilinear, binary mask, peak 255.")


if __name__ == "__main__":
    main()
