"""Where the time and memory of harmonizing one large photo go: decode / network / transfer / encode.

What `lemart-harmonize composite.jpg mask.png -o out.jpg` does, split into its phases and timed in one process per
size and input form with the packaged default model (`lemart_hf.default_model.default_model_path()`, SwinIH-tiny
at 128 px):

  decode    reading the composite (JPEG) and the mask (PNG) into what the pipeline gets: `--inputs pil`, PIL images
            (`load_image`; the caller keeps them, as a program calling `pipe(image, mask)` does); `--inputs cli`,
            what the CLI hands over (`cli._decoded_inputs`: since the uint8 path, uint8 tensors, the PIL images
            dropped; before it, the PIL images)
  network   the pipeline's `preprocess` (the inputs as the transfer keeps them + the resize to the working size)
            and the model's forward pass at the working size
  transfer  the rest of the pipeline's forward (fitting the colour transform at the working size, applying it at
            full size) and its `postprocess` (the output image)
  encode    JPEG save, quality 95 (as the CLI)

Inputs are synthetic but photo-like (smooth shading, hard-edged shapes, film grain; a soft-edged object mask of
about 30% of the frame, recoloured inside), written once to `--workdir` as a JPEG (quality 95) and a PNG, so
that runs of different code versions read the same files. The model is warmed up on a small image first.

Memory: the peak resident memory (Linux VmHWM, reset with /proc/self/clear_refs) above what the process held before
decoding, so the decoded images count; also the peak during the pipeline call alone above what the process held
when it started (the decoded images excluded, as `bench_highres.py` measures). Both are also given as multiples of
the decoded RGB image, H x W x 3 bytes. Pillow holds an RGB image in 4 bytes a pixel, so the decoded composite and
mask alone take (4 + 1) / 3 = 1.67 of those, and an RGB output image another 1.33.

    python benchmarks/bench_fullres.py                          # 4096 and 8000, --method affine
    python benchmarks/bench_fullres.py --sizes 2048 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


# ----- inputs ---------------------------------------------------------------------------------------------------
def make_inputs(size: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write `composite_{size}.jpg` and `mask_{size}.png` to `folder` (kept if already there)."""
    composite_path, mask_path = folder / f"composite_{size}.jpg", folder / f"mask_{size}.png"
    if composite_path.is_file() and mask_path.is_file():
        return composite_path, mask_path
    rng = np.random.default_rng(seed)
    # Smooth shading: a 5x5 grid of colours, bicubic-upscaled; then hard-edged shapes (edges for JPEG to code).
    real = Image.fromarray(rng.integers(40, 216, (5, 5, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(real)
    for _ in range(60):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 40, size // 5, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
    # Object mask: a few overlapping ellipses drawn small, blurred and upscaled (a soft edge of a few pixels).
    small = size // 8
    mask_small = Image.new("L", (small, small))
    draw = ImageDraw.Draw(mask_small)
    for cx, cy, rx, ry in ((0.5, 0.55, 0.22, 0.3), (0.42, 0.3, 0.12, 0.12), (0.62, 0.75, 0.16, 0.12)):
        draw.ellipse([small * (cx - rx), small * (cy - ry), small * (cx + rx), small * (cy + ry)], fill=255)
    mask = mask_small.filter(ImageFilter.GaussianBlur(1)).resize((size, size), Image.BILINEAR)
    # Grain and the recolouring inside the mask, in strips of rows (bounded memory at 8000 px).
    rgb, alpha = np.asarray(real), np.asarray(mask)
    out = np.empty_like(rgb)
    matrix = np.array([[0.8, 0.12, 0.0], [0.05, 0.9, 0.08], [0.0, 0.15, 0.75]], np.float32)
    for top in range(0, size, 512):
        rows = slice(top, min(top + 512, size))
        x = rgb[rows].astype(np.float32) + rng.normal(0, 5, (rows.stop - top, size, 3)).astype(np.float32)
        recoloured = x @ matrix.T + np.array([20, -8, 25], np.float32)
        m = alpha[rows, :, None].astype(np.float32) / 255
        out[rows] = np.clip(m * recoloured + (1 - m) * x, 0, 255).round().astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(composite_path, quality=95)
    mask.save(mask_path)
    return composite_path, mask_path


# ----- the measured process -------------------------------------------------------------------------------------
def worker(args) -> None:
    from collections import deque

    import torch
    from bench_highres import peak_resident_mb, resident_mb
    from transformers import pipeline

    from lemart_hf.cli import _decoded_inputs
    from lemart_hf.default_model import default_model_path
    from lemart_hf.models.swinih.image_processing_swinih import load_image
    from lemart_hf.pipelines import ImageHarmonizationPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = pipeline(
        "image-harmonization",
        model=default_model_path(),
        pipeline_class=ImageHarmonizationPipeline,
        device="cpu",
        highres_method=args.method,
    )
    network_seconds = []

    def started(module, inputs):
        network_seconds.append(-time.perf_counter())

    def finished(module, inputs, outputs):
        network_seconds[-1] += time.perf_counter()

    pipe.model.register_forward_pre_hook(started)
    pipe.model.register_forward_hook(finished)

    def harmonize(image, mask):
        """The pipeline's three steps as `Pipeline.run_single` runs them, each timed."""
        times = {}
        tick = time.perf_counter()
        model_inputs = pipe.preprocess({"image": image, "mask": mask}, **pipe._preprocess_params)
        times["prep"] = time.perf_counter() - tick
        tick = time.perf_counter()
        model_outputs = pipe.forward(model_inputs, **pipe._forward_params)
        times["forward"] = time.perf_counter() - tick
        tick = time.perf_counter()
        result = pipe.postprocess(model_outputs, **pipe._postprocess_params)
        times["post"] = time.perf_counter() - tick
        return result, times

    composite_path, mask_path, output_path = Path(args.composite), Path(args.mask), Path(args.output)
    rng = np.random.default_rng(1)
    warm_mask = np.zeros((96, 96), np.uint8)
    warm_mask[24:72, 30:66] = 255
    harmonize(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)), Image.fromarray(warm_mask))
    network_seconds.clear()
    gc.collect()

    baseline = resident_mb(reset_peak=True)
    tick = time.perf_counter()
    if args.inputs == "pil":
        image, mask = load_image(composite_path), load_image(mask_path)
    else:  # the CLI's generator stays suspended, holding its inputs, while they are harmonized
        decoded = _decoded_inputs([(composite_path, mask_path, output_path)], deque(), None)
        inputs = next(decoded)
        image, mask = inputs["image"], inputs["mask"]
        del inputs
    decode = time.perf_counter() - tick
    peak_decode = peak_resident_mb()

    before_call = resident_mb(reset_peak=True)
    output, times = harmonize(image, mask)
    peak_call = peak_resident_mb()

    resident_mb(reset_peak=True)
    tick = time.perf_counter()
    output.save(output_path, quality=95)
    encode = time.perf_counter() - tick
    peak_encode = peak_resident_mb()

    model = sum(network_seconds)
    print(
        json.dumps(
            {
                "size": args.size,
                "inputs": args.inputs,
                "input_types": f"{type(image).__name__} {getattr(image, 'dtype', '')}".strip(),
                "method": args.method,
                "threads": torch.get_num_threads(),
                "decode": decode,
                "prep": times["prep"],
                "model": model,
                "transfer": times["forward"] - model,
                "post": times["post"],
                "encode": encode,
                "peak_mb": max(peak_decode, peak_call, peak_encode) - baseline,
                "peak_call_mb": peak_call - before_call,
                "decoded_mb": args.size * args.size * 3 / 2**20,
                "output_mode": output.mode,
            }
        )
    )


# ----- the table ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[4096, 8000])
    parser.add_argument("--method", default="affine", choices=["affine", "offset", "resize"])
    parser.add_argument("--inputs", nargs="+", default=["pil", "cli"], choices=["pil", "cli"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workdir", default="/tmp/bench_fullres", help="where the inputs are written (and kept)")
    parser.add_argument("--worker", dest="worker_inputs", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--composite", help=argparse.SUPPRESS)
    parser.add_argument("--mask", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_inputs:
        args.inputs = args.worker_inputs
        worker(args)
        return

    folder = Path(args.workdir)
    environment = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    print(f"load average {os.getloadavg()[0]:.1f}; method {args.method}; inputs in {folder}", flush=True)
    rows = []
    for size in args.sizes:
        composite, mask = make_inputs(size, folder)
        for inputs in args.inputs:
            command = [sys.executable, __file__, "--worker", inputs, "--size", str(size), "--method", args.method]
            command += ["--threads", str(args.threads), "--composite", str(composite), "--mask", str(mask)]
            command += ["--output", str(folder / f"harmonized_{size}_{inputs}.jpg")]
            result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"worker failed for {size} {inputs}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)

    print()
    print(
        "| size | inputs | decode | network (prep + model) | transfer (apply + output) | encode | total "
        "| transfer / (decode + encode) | peak MB (x decoded) | pipeline call peak MB (x decoded) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        phases = {
            "decode": row["decode"],
            "network": row["prep"] + row["model"],
            "transfer": row["transfer"] + row["post"],
            "encode": row["encode"],
        }
        total = sum(phases.values())
        cells = [f"{v:.2f} s ({100 * v / total:.0f}%)" for v in phases.values()]
        decoded = row["decoded_mb"]
        print(
            f"| {row['size']}x{row['size']} | {row['inputs']} ({row['input_types']}) | "
            + " | ".join(cells)
            + f" | {total:.2f} s | {phases['transfer'] / (phases['decode'] + phases['encode']):.2f} "
            f"| {row['peak_mb']:.0f} ({row['peak_mb'] / decoded:.2f}x) "
            f"| {row['peak_call_mb']:.0f} ({row['peak_call_mb'] / decoded:.2f}x) |"
        )
    print(f"\ntorch threads: {rows[0]['threads']}; the parts of each row, in seconds:")
    for row in rows:
        print(
            f"  {row['size']} {row['inputs']}: preprocess {row['prep']:.2f} + model {row['model']:.2f}; "
            f"rest of forward {row['transfer']:.2f} + postprocess {row['post']:.2f}"
        )


if __name__ == "__main__":
    main()
