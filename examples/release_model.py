#!/usr/bin/env python
"""Turn a trained model folder into a small, hub-ready release folder with a model card.

    python examples/release_model.py --model outputs/houtdoor_study/finetune_lemart_1.0 \\
        --results outputs/houtdoor_study/eval_finetune_lemart_1.0/results.json \\
        --output model_cards/swinih-tiny-lemart-houtdoor --name swinih-tiny-lemart-houtdoor \\
        --summary_file summary.md --notes_file limitations.md --sample_grid grid.png

The release holds the config, the weights as safetensors (float16 by default, to keep it small; the config says
float32, so `from_pretrained` gives a float32 model), the image processor config, the model code (so it loads with
`trust_remote_code=True` where lemart_hf is not installed) and README.md: model-index metrics from a run_eval.py
``results.json``, the summary, results, samples, usage, the training recipe and exact command of the training
run's own card, and the notes (data, limitations). Upload it with `huggingface-cli upload NAME FOLDER`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForImageToImage

import lemart_hf  # noqa: F401  (registers the Auto classes)
from lemart_hf.evaluation import ALL
from lemart_hf.training import CardMetric, model_card

_RECIPE_ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| `(?P<value>.*)` \|$")
_COMMAND = re.compile(r"## Command\n\n```bash\n(?P<command>.*?)\n```", re.S)


def training_card_parts(card: str) -> tuple[dict, str]:
    """The recipe table and the exact command of a card written by run_pretrain.py / run_finetune.py."""
    recipe = {m["key"]: m["value"] for m in map(_RECIPE_ROW.match, card.splitlines()) if m}
    command = _COMMAND.search(card)
    return recipe, command["command"] if command else ""


def card_metrics(results: dict, dataset_name: str) -> list[CardMetric]:
    """model-index entries (PSNR, MSE, fPSNR, fMSE) for every row of a run_eval.py results table."""
    metrics = []
    for row, values in results["table"].items():
        config = None if row == ALL else row
        for label, key in (("PSNR", "psnr"), ("MSE", "mse"), ("fPSNR", "fpsnr"), ("fMSE", "fmse")):
            metrics.append(CardMetric(label, key, values[key], dataset_name, "iharmony4", "test", dataset_config=config))
    return metrics


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="The trained folder (run_pretrain.py / run_finetune.py output).")
    parser.add_argument("--output", required=True, help="The release folder to write (replaced if it exists).")
    parser.add_argument("--name", required=True, help="Model name / hub id used in the card.")
    parser.add_argument("--results", default=None, help="run_eval.py results.json of this model: model-index metrics.")
    parser.add_argument("--dataset_name", default="HOutdoor", help="Dataset name for the model-index entries.")
    parser.add_argument("--summary_file", required=True, help="Markdown: what the model is and how it was made.")
    parser.add_argument("--results_file", default=None, help="Markdown for the Results section (e.g. a study table).")
    parser.add_argument("--notes_file", default=None, help="Markdown appended as is (data, limitations, ...).")
    parser.add_argument("--sample_grid", default=None, help="A PNG of samples, copied as sample_grid.png.")
    parser.add_argument("--storage_dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--tags", nargs="*", default=[], help="Extra card tags.")
    args = parser.parse_args(argv)

    source = Path(args.model)
    if not (source / "config.json").is_file():
        parser.error(f"--model {args.model!r} holds no config.json: not a saved model folder")
    model = AutoModelForImageToImage.from_pretrained(source, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(source)
    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    model.to(getattr(torch, args.storage_dtype)).save_pretrained(output, safe_serialization=True)
    config_path = output / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"  # stored small, loaded (and run) in float32
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    processor.save_pretrained(output)

    recipe, command = ({}, "")
    if (source / "README.md").is_file():
        recipe, command = training_card_parts((source / "README.md").read_text())
    metrics = card_metrics(json.loads(Path(args.results).read_text()), args.dataset_name) if args.results else []
    sample = None
    if args.sample_grid:
        shutil.copyfile(args.sample_grid, output / "sample_grid.png")
        sample = "sample_grid.png"
    text = model_card(
        model_name=args.name,
        summary=Path(args.summary_file).read_text(),
        metrics=metrics,
        recipe=recipe,
        command=command,
        results_markdown=Path(args.results_file).read_text() if args.results_file else "",
        extra_tags=[json.loads((source / "config.json").read_text())["model_type"].removeprefix("lemart_"), *args.tags],
        sample_image=sample,
    )
    if args.notes_file:
        text = text.rstrip() + "\n\n" + Path(args.notes_file).read_text().strip() + "\n"
    (output / "README.md").write_text(text, encoding="utf-8")
    size = sum(p.stat().st_size for p in output.iterdir()) / 1e6
    print(f"wrote {output} ({size:.1f} MB): {', '.join(sorted(p.name for p in output.iterdir()))}")
    return output


if __name__ == "__main__":
    main()
