#!/usr/bin/env python
"""Scores a harmonization model (or a model-free baseline) on an iHarmony4-layout dataset.

Prints the table of the paper's Table 1 (rows: the subsets and All; columns MSE, PSNR, fMSE, fPSNR) and
writes it to ``<output_dir>/results.json`` (with per-image values) and ``results.md``.

    # a model (a local folder or a Hub id), on every subset found under --data_dir
    accelerate launch examples/run_eval.py --data_dir /data/iHarmony4 --model outputs/finetune

    # the model in bfloat16 (as `lemart-harmonize --dtype bf16`), or an ONNX export in ONNX Runtime (lemart_hf.onnx)
    python examples/run_eval.py --data_dir ../shared/data --subsets HOutdoor --model MODEL --dtype bf16
    python examples/run_eval.py --data_dir ../shared/data --subsets HOutdoor --model swinih.onnx

    # choosing a setting on the validation split run_finetune.py --validation_fraction 0.1 held out (not on test)
    python examples/run_eval.py --data_dir ../shared/data --subsets HOutdoor HDiverse --split train \
        --held_out_fraction 0.1 --model MODEL --transfer_radius 16

    # the baselines, no model needed
    python examples/run_eval.py --data_dir ../shared/data --subsets HOutdoor --baseline composite
    python examples/run_eval.py --data_dir ../shared/data --subsets HOutdoor --baseline color_transfer

The evaluation itself is `lemart_hf.evaluation.evaluate_harmonization` — the same code the fine-tuning script
runs at its end — under the protocol of DESIGN.md §4 (``--protocol default``: 256x256, antialiased bilinear,
mask thresholded at 0.5, peak 255; ``--protocol is2am``: the iS2AM code's variant).
"""

from __future__ import annotations

import argparse
import os

# OpenMP threads that spin while they wait make every parallel op crawl when other work shares the CPU (here: the
# LEMaRT composer at 28-50 composites/s beside a training run, 490-520/s waiting passively; benchmarks/README.md).
# It must be set before torch loads OpenMP; a value from the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from safetensors import SafetensorError

from lemart_hf.baselines import BASELINES, color_transfer_baseline, get_baseline
from lemart_hf.cli import DTYPES
from lemart_hf.data import DataFileError, hold_out_photos, load_iharmony4
from lemart_hf.evaluation import NonFinitePredictionError, evaluate_harmonization
from lemart_hf.highres import TRANSFER_METHODS
from lemart_hf.metrics import PROTOCOLS
from lemart_hf.models.swinih.image_processing_swinih import MIN_WORKING_SIZE
from lemart_hf.onnx import is_onnx_path
from lemart_hf.training import check_launch, model_path_problem, output_dir_problem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data_dir", required=True, help="iHarmony4-layout root holding <Subset>/{composite_images,masks,real_images}."
    )
    parser.add_argument(
        "--subsets", nargs="+", default=None, help="Subset folders to score (default: every one found)."
    )
    parser.add_argument("--split", default="test", help="Which list to read: <Subset>_<split>.txt or IHD_<split>.txt.")
    parser.add_argument(
        "--held_out_fraction",
        type=float,
        default=None,
        help="Score only the photos that run_finetune.py --validation_fraction F holds out of --split (e.g. "
        "--split train --held_out_fraction 0.1: its validation split), to choose settings without the test split.",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--model",
        default=None,
        help="A saved model folder or Hub id (AutoModelForImageToImage), or an ONNX export (.onnx, run on the CPU).",
    )
    what.add_argument(
        "--baseline", choices=sorted(BASELINES), default=None, help="Score a model-free baseline instead."
    )
    parser.add_argument(
        "--color_transfer_lab",
        choices=["uint8", "float"],
        default="uint8",
        help="Lab convention of --baseline color_transfer: OpenCV's 8-bit Lab (default) or exact float CIE Lab.",
    )
    parser.add_argument(
        "--protocol", choices=sorted(PROTOCOLS), default="default", help="Evaluation protocol (DESIGN.md §4)."
    )
    parser.add_argument(
        "--working_size",
        type=int,
        default=None,
        help="Side the model runs at, at least 8 (default: its image processor's size, as the pipeline does); "
        "predictions are carried to the protocol size by the high-resolution transfer. 256: run the network at the "
        "protocol size.",
    )
    parser.add_argument(
        "--highres_method",
        choices=TRANSFER_METHODS,
        default="affine",
        help="How a prediction at the working size reaches the protocol size (lemart_hf.highres).",
    )
    parser.add_argument(
        "--transfer_radius",
        type=int,
        default=None,
        help="Window radius of the affine / offset transfer, in working-size pixels (default: the pipeline's, "
        "lemart_hf.highres.default_radius).",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="Images per batch per process.")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers (decoding, resizing).")
    parser.add_argument(
        "--max_samples", type=int, default=None, help="At most this many images per subset (smoke tests)."
    )
    parser.add_argument("--output_dir", default="outputs/eval", help="Where results.json and results.md go.")
    parser.add_argument(
        "--save_images", default=None, metavar="DIR", help="Also write predictions (PNG) and comparison grids here."
    )
    parser.add_argument(
        "--num_grids", type=int, default=4, help="How many comparison grids (one per batch) --save_images writes."
    )
    parser.add_argument(
        "--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="Overrides accelerate's config."
    )
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="Load the model's weights in this dtype, as `lemart-harmonize --dtype` does (default: as saved).",
    )
    return parser


def model_working_size(model_name_or_path: str) -> tuple[int, int] | None:
    """The working size of a saved model: its image processor's ``size`` (None when it has no processor config)."""
    from transformers import AutoImageProcessor

    try:
        size = AutoImageProcessor.from_pretrained(model_name_or_path).size
    except (OSError, ValueError):
        return None
    return (size["height"], size["width"]) if isinstance(size, dict) else (size, size)


def load_model_predictor(
    model_name_or_path: str,
    device: torch.device,
    working_size: int | None = None,
    highres_method: str = "affine",
    dtype: str | None = None,
    radius: int | None = None,
):
    """AutoModelForImageToImage after `import lemart_hf` (which registers the package's models), with its weights in
    ``dtype`` ("fp32", "bf16" or "fp16"; default: as saved), or an ONNX export (`lemart_hf.onnx`), run like the
    "image-harmonization" pipeline: at ``working_size`` (default: the model's image processor size, or the export's),
    the correction carried to the protocol size by the high-resolution transfer (window ``radius``: see
    `lemart_hf.highres.fit_color_transform`)."""
    from transformers import AutoModelForImageToImage

    import lemart_hf  # noqa: F401  (registers the Auto classes)
    from lemart_hf.evaluation import model_predictor
    from lemart_hf.onnx import OnnxHarmonizationModel, is_onnx_path

    if is_onnx_path(model_name_or_path):
        model = OnnxHarmonizationModel(model_name_or_path)
        size = (working_size, working_size) if working_size else model.working_size
        return model_predictor(model, size, highres_method, radius=radius), size
    model = AutoModelForImageToImage.from_pretrained(model_name_or_path, dtype=DTYPES[dtype] if dtype else "auto")
    model.to(device).eval()
    size = (working_size, working_size) if working_size else model_working_size(model_name_or_path)
    return model_predictor(model, size, highres_method, radius=radius), size


def _to_pil(image: torch.Tensor):
    from PIL import Image

    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)


class ImageSaver:
    """Writes each prediction as ``<dir>/predictions/<subset>/<stem>.png`` (at the protocol size) and, on the main
    process, the first ``num_grids`` batches as grids: rows of composite | mask | prediction | real."""

    def __init__(self, directory: str, num_grids: int, is_main_process: bool, max_rows: int = 8):
        self.directory = directory
        self.grids_left = num_grids if is_main_process else 0
        self.max_rows = max_rows
        self.count = 0

    def __call__(self, batch: dict, harmonized: torch.Tensor) -> None:
        for subset, name, image in zip(batch["subset"], batch["name"], harmonized):
            folder = os.path.join(self.directory, "predictions", subset)
            os.makedirs(folder, exist_ok=True)
            _to_pil(image).save(os.path.join(folder, os.path.splitext(name)[0] + ".png"))
        if self.grids_left > 0:
            rows = min(self.max_rows, harmonized.shape[0])
            mask = batch["mask"][:rows].expand(-1, 3, -1, -1)
            tiles = [batch["composite"][:rows], mask, harmonized[:rows], batch["real"][:rows]]
            grid = torch.cat([torch.cat(list(t), dim=1) for t in tiles], dim=2)  # (3, rows*H, 4*W)
            os.makedirs(os.path.join(self.directory, "grids"), exist_ok=True)
            _to_pil(grid).save(os.path.join(self.directory, "grids", f"grid_{self.count:03d}.png"))
            self.count += 1
            self.grids_left -= 1


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model is None and args.baseline is None:
        parser.error("nothing to score: give --model PATH_OR_ID or --baseline {composite,color_transfer}")
    if not os.path.isdir(args.data_dir):
        parser.error(f"--data_dir {args.data_dir!r} is not a directory")
    for name, smallest in (
        ("batch_size", 1), ("num_workers", 0), ("max_samples", 1), ("num_grids", 0), ("transfer_radius", 1)
    ):
        value = getattr(args, name)
        if value is not None and value < smallest:
            parser.error(f"--{name} must be >= {smallest}, got {value}")
    if args.model is not None and is_onnx_path(args.model):
        if not os.path.isfile(args.model):
            parser.error(f"--model {args.model!r}: ONNX file not found")
        if args.dtype not in (None, "fp32") or args.mixed_precision not in (None, "no"):
            parser.error("an ONNX model runs in float32: drop --dtype / --mixed_precision")
    elif args.model is not None and (problem := model_path_problem(args.model)):
        parser.error(f"--model {args.model!r} {problem}")
    for name in ("output_dir", "save_images"):  # checked now, not after the whole evaluation
        if getattr(args, name) is not None and (problem := output_dir_problem(getattr(args, name))):
            parser.error(f"--{name} {getattr(args, name)!r} {problem}")
    try:
        dataset = load_iharmony4(args.data_dir, args.subsets, args.split, max_samples=args.max_samples)
        if args.held_out_fraction is not None:
            _, dataset = hold_out_photos(dataset, args.held_out_fraction)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))

    if args.working_size is not None and args.working_size < MIN_WORKING_SIZE:
        parser.error(f"--working_size must be >= {MIN_WORKING_SIZE}, got {args.working_size}")

    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    check_launch(accelerator)
    working_size = None
    if args.baseline == "color_transfer":
        title = f"color_transfer (Lab {args.color_transfer_lab})"

        def predict_fn(pixel_values):
            return color_transfer_baseline(pixel_values, lab=args.color_transfer_lab)

    elif args.baseline is not None:
        title, predict_fn = args.baseline, get_baseline(args.baseline)
    else:
        title = args.model
        try:
            predict_fn, working_size = load_model_predictor(
                args.model,
                accelerator.device,
                args.working_size,
                args.highres_method,
                args.dtype,
                radius=args.transfer_radius,
            )
        except (OSError, ValueError, ImportError, SafetensorError) as error:
            parser.error(f"--model {args.model!r} could not be loaded: {str(error).splitlines()[0]}")
        if working_size is not None:
            radius = f", radius {args.transfer_radius}" if args.transfer_radius else ""
            title += f" (working size {working_size[0]}x{working_size[1]}, {args.highres_method} transfer{radius})"
        if args.dtype is not None:
            title += f" ({args.dtype})"

    saver = None
    if args.save_images:
        saver = ImageSaver(args.save_images, args.num_grids, accelerator.is_main_process)
    try:
        results = evaluate_harmonization(
            predict_fn,
            dataset,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            protocol=args.protocol,
            accelerator=accelerator,
            on_batch=saver,
            title=title,
        )
    except (DataFileError, NonFinitePredictionError) as error:
        raise SystemExit(f"run_eval.py: error: {error}") from None
    results.extra.update(
        {
            "data_dir": os.path.abspath(args.data_dir),
            "split": args.split,
            "held_out_fraction": args.held_out_fraction,
            "model": args.model,
            "baseline": args.baseline,
            "working_size": list(working_size) if working_size else None,
            "highres_method": args.highres_method if working_size else None,
            "transfer_radius": args.transfer_radius if working_size else None,
            "dtype": args.dtype,
        }
    )
    if accelerator.is_main_process:
        print(results.to_markdown(), flush=True)  # first: a failing save must not lose the numbers
        try:
            json_path, md_path = results.save(args.output_dir)
        except OSError as error:
            message = f"could not write the results into {args.output_dir!r}: {error}"
            raise SystemExit(f"run_eval.py: error: {message}") from None
        print(f"Wrote {json_path} and {md_path}")
    accelerator.wait_for_everyone()
    return results.to_dict()


if __name__ == "__main__":
    main()
