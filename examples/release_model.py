#!/usr/bin/env python
"""Turn a trained model folder into a small release: a complete hub repository with a model card.

    python examples/release_model.py --model outputs/houtdoor_study/finetune_lemart_1.0 \\
        --results outputs/houtdoor_study/eval_finetune_lemart_1.0/results.json \\
        --output model_cards/swinih-tiny-lemart-houtdoor --name swinih-tiny-lemart-houtdoor \\
        --base_model swinih-tiny-lemart-pretrained \\
        --summary_file summary.md --notes_file limitations.md --sample_grid grid.png

    # re-release a release with the current code and card format (the weights are written again byte for byte)
    python examples/release_model.py --model model_cards/swinih-tiny-lemart-houtdoor \\
        --output model_cards/swinih-tiny-lemart-houtdoor --name swinih-tiny-lemart-houtdoor

The release is written by `lemart_hf.hub.save_hub_folder`: the config (with the "image-harmonization" pipeline),
the weights as safetensors (float16 by default, to keep it small; the config says float32, so `from_pretrained`
gives a float32 model), the image processor config, the code of the model and of the pipeline (so that
`pipeline(model=..., trust_remote_code=True)` works where lemart_hf is not installed) and README.md: model-index
metrics from a run_eval.py ``results.json``, the summary, results, samples, usage, the training recipe and exact
command of the --model folder's own card, the notes (data, limitations) and the licence. What is not given is taken
from the --model folder's card (and its sample_grid.png). Upload it with `hf upload NAME FOLDER`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForImageToImage

import lemart_hf  # noqa: F401  (registers the Auto classes)
from lemart_hf.default_model import write_package_default
from lemart_hf.hub import SAMPLE_CAPTION, model_card, read_card, results_metrics, save_hub_folder

#: Why releases of models trained on ../shared/data are non-commercial (the default --license_reason).
RESEARCH_ONLY = (
    "The weights are for non-commercial research use because the photos they were trained and evaluated on are "
    "(see Data): real photos of research collections (LabelMe / the Oliva-Torralba scenes, as redistributed with the "
    "Lalonde & Efros realism data in the public iHarmony4 repository, and others) whose terms are research-only or "
    "unstated, and a model inherits those terms. The code files in this repository are Apache-2.0, like lemart_hf."
)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="The trained folder (run_pretrain.py / run_finetune.py output).")
    parser.add_argument("--output", required=True, help="The release folder to write (replaced; may be --model).")
    parser.add_argument("--name", required=True, help="Model name / hub id used in the card.")
    parser.add_argument("--results", default=None, help="run_eval.py results.json of this model: model-index metrics.")
    parser.add_argument(
        "--dataset_name",
        default=None,
        help="Dataset name of the model-index entry over all test images (default: the subsets joined by '+').",
    )
    parser.add_argument("--summary_file", default=None, help="Markdown: what the model is and how it was made.")
    parser.add_argument("--results_file", default=None, help="Markdown for the Results section (e.g. a study table).")
    parser.add_argument("--notes_file", default=None, help="Markdown sections (## Data, ## Limitations, ...).")
    parser.add_argument("--sample_grid", default=None, help="A PNG of samples, copied as sample_grid.png.")
    parser.add_argument(
        "--sample_caption", default=None, help="What its columns show (default: the --model card's, else the scripts')."
    )
    parser.add_argument(
        "--base_model",
        default=None,
        help="What the model it was fine-tuned from was released as (card `base_model`); default: the --model card's.",
    )
    parser.add_argument(
        "--license", default="cc-by-nc-4.0", help="Hub licence id of the weights (default suits ../shared/data)."
    )
    parser.add_argument("--license_reason", default=RESEARCH_ONLY, help="Why that licence (the card's License).")
    parser.add_argument("--storage_dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--tags", nargs="*", default=[], help="Extra card tags.")
    parser.add_argument(
        "--package_default",
        action="store_true",
        help="Also make it the package's default model (lemart_hf/released/, see lemart_hf.default_model).",
    )
    args = parser.parse_args(argv)

    source = Path(args.model)
    if not (source / "config.json").is_file():
        parser.error(f"--model {args.model!r} holds no config.json: not a saved model folder")
    has_card = (source / "README.md").is_file()
    if args.summary_file is None and not has_card:
        parser.error(f"--model {args.model!r} has no README.md to take the summary from: give --summary_file")
    # Everything is read before anything is written: --output may be --model.
    model = AutoModelForImageToImage.from_pretrained(source, dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(source)
    parts = read_card(source / "README.md") if has_card else None
    sample_grid = Path(args.sample_grid) if args.sample_grid else source / "sample_grid.png"
    files = {"sample_grid.png": sample_grid.read_bytes()} if sample_grid.is_file() else {}
    if args.results:
        table = json.loads(Path(args.results).read_text())["table"]
        everything = args.dataset_name or "+".join(sorted(subset for subset in table if subset != "All"))
        metrics = results_metrics(table, "iharmony4", lambda subset: subset or everything)
    else:
        metrics = parts.metrics if parts else []

    def text(path: str | None, default: str) -> str:
        return Path(path).read_text() if path else default

    card = model_card(
        model_name=args.name,
        summary=text(args.summary_file, parts.summary if parts else ""),
        metrics=metrics,
        recipe=parts.recipe if parts else {},
        command=parts.command if parts else "",
        license=args.license,
        license_reason=args.license_reason,
        results_markdown=text(args.results_file, parts.results_markdown if parts else ""),
        notes=text(args.notes_file, parts.notes if parts else ""),
        base_model=args.base_model or (parts.base_model if parts else None),
        extra_tags=[model.config.model_type.removeprefix("lemart_"), *(parts.tags if parts else []), *args.tags],
        sample_image="sample_grid.png" if files else None,
        sample_caption=args.sample_caption or (parts.sample_caption if parts else SAMPLE_CAPTION),
    )
    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)
    storage_dtype = getattr(torch, args.storage_dtype)
    save_hub_folder(output, model, processor, card, files=files, storage_dtype=storage_dtype)
    size = sum(p.stat().st_size for p in output.iterdir()) / 1e6
    print(f"wrote {output} ({size:.1f} MB): {', '.join(sorted(p.name for p in output.iterdir()))}")
    if args.package_default:
        print(f"wrote the package's default model to {write_package_default(output)}")
    return output


if __name__ == "__main__":
    main()
