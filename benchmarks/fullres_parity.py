"""Full-resolution outputs of today's pipeline against those of an older revision's, on the same inputs.

The pipeline files (`image_harmonization.py`, `highres.py`, `image_processing_swinih.py`) of `--baseline REV` are
loaded as a separate package (`code_versions.py`) and run with the same model (the packaged default). Inputs: the
six packaged sample composites (src/lemart_hf/sample_composites, JPEG + PNG mask) and the synthetic photo-like
composites of `bench_fullres.py` at `--sizes`, as PIL images (what the CLI passes). For each method, prints the
largest difference of the PIL outputs (levels of 255) with the number of pixels that differ, the largest difference
of the `output_type="pt"` outputs, and whether the background (mask 0) is the input's pixels exactly.

    python benchmarks/fullres_parity.py --baseline main --sizes 1024 4096
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fullres import make_inputs
from code_versions import import_as_package, package_name, sources_at_revision

PIPELINE_FILES = {
    "image_harmonization.py": "src/lemart_hf/pipelines/image_harmonization.py",
    "highres.py": "src/lemart_hf/highres.py",
    "image_processing_swinih.py": "src/lemart_hf/models/swinih/image_processing_swinih.py",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git revision of the code to compare with")
    parser.add_argument("--sizes", nargs="*", type=int, default=[1024, 4096])
    parser.add_argument("--methods", nargs="+", default=["affine", "offset", "resize"])
    parser.add_argument("--workdir", default="/tmp/bench_fullres")
    args = parser.parse_args()

    from transformers import pipeline

    from lemart_hf.default_model import default_model_path
    from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR
    from lemart_hf.models.swinih.image_processing_swinih import load_image
    from lemart_hf.pipelines import ImageHarmonizationPipeline

    old = import_as_package(
        package_name("fullres_parity", args.baseline),
        sources_at_revision(args.baseline, PIPELINE_FILES),
        "image_harmonization",
    )
    pipes = {
        name: pipeline("image-harmonization", model=default_model_path(), pipeline_class=cls, device="cpu")
        for name, cls in (("old", old.ImageHarmonizationPipeline), ("new", ImageHarmonizationPipeline))
    }
    pairs = [(path, path.with_name(f"{path.stem}_mask.png")) for path in sorted(SAMPLE_COMPOSITES_DIR.glob("*.jpg"))]
    pairs += [make_inputs(size, Path(args.workdir)) for size in args.sizes]
    print(f"baseline {args.baseline}; PIL outputs: max |new - old| in levels (pixels that differ); pt: max |new - old|")
    print("| input | size | method | PIL max diff | PIL pixels differing | pt max diff | background exact |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for composite_path, mask_path in pairs:
        image, mask = load_image(composite_path), load_image(mask_path)
        rgb, background = np.asarray(image.convert("RGB")), np.asarray(mask.convert("L")) == 0
        for method in args.methods:
            pil = {k: np.asarray(p(image, mask, highres_method=method)).astype(np.int16) for k, p in pipes.items()}
            pt = {k: p(image, mask, highres_method=method, output_type="pt") for k, p in pipes.items()}
            difference = np.abs(pil["new"] - pil["old"])
            exact = np.array_equal(pil["new"][background], rgb[background])
            print(
                f"| {composite_path.name} | {image.width}x{image.height} | {method} | {difference.max()} "
                f"| {int((difference.max(axis=-1) > 0).sum())} | {float((pt['new'] - pt['old']).abs().max()):.2e} "
                f"| {exact} |",
                flush=True,
            )
            del pil, pt


if __name__ == "__main__":
    main()
