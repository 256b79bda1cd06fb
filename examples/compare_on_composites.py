#!/usr/bin/env python
"""Compare models (and the colour-transfer baseline) on a folder of composites: a gallery and colour shifts.

Real composites have no ground truth: look at the pages, and read the colour shifts (how far each method moved the
foreground's mean colour, Δa*b*, and lightness, ΔL*) to spot a model that adds casts the composite did not have.

    python examples/compare_on_composites.py outputs/gallery --composites ../shared/data/real_composites \\
        --model released=model_cards/swinih-lemart-general --model candidate=outputs/finetune --reinhard

    python examples/compare_on_composites.py outputs/gallery   # the packaged model on the packaged samples

Writes OUTPUT_DIR/page_NN.png, index.html, images/ and shifts.json (see `lemart_hf.gallery.make_gallery`).
"""

from __future__ import annotations

import argparse

from lemart_hf import ImageHarmonizationPipeline
from lemart_hf.default_model import DEFAULT_MODEL_NAME, default_model_path
from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR, composite_folder, make_gallery, pipeline_method, reinhard_method


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument(
        "--composites",
        default=str(SAMPLE_COMPOSITES_DIR),
        help="Folder of NAME.jpg + NAME_mask.png (default: the real composites shipped with the package).",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help=f"A model folder or hub id (repeat; default: the packaged {DEFAULT_MODEL_NAME}).",
    )
    parser.add_argument("--reinhard", action="store_true", help="Add the Reinhard colour-transfer baseline.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N composites.")
    parser.add_argument("--max_side", type=int, default=384, help="Shrink composites to this long side first.")
    parser.add_argument("--rows_per_page", type=int, default=10)
    args = parser.parse_args(argv)
    from transformers import pipeline

    methods = {}
    for spec in args.model or [f"{DEFAULT_MODEL_NAME}={default_model_path()}"]:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--model takes NAME=PATH, got {spec!r}")
        # pipeline_class: lemart_hf's own code also for folders that declare the pipeline (lemart_hf.hub)
        pipe = pipeline("image-harmonization", model=path, pipeline_class=ImageHarmonizationPipeline)
        methods[name] = pipeline_method(pipe)
    if args.reinhard:
        methods["colour transfer"] = reinhard_method
    rows = composite_folder(args.composites, max_side=args.max_side, limit=args.limit)
    gallery = make_gallery(rows, methods, args.output_dir, rows_per_page=args.rows_per_page)
    print(f"{'method':<24} {'mean |dL*|':>10} {'mean dab':>9}  largest dab")
    for method, shift in gallery["shifts"].items():
        print(f"{method:<24} {shift['mean_abs_dL']:>10.2f} {shift['mean_dab']:>9.2f}  {shift['largest_dab'][:3]}")
    print(f"wrote {len(gallery['pages'])} pages and {gallery['html']}")
    return gallery


if __name__ == "__main__":
    main()
