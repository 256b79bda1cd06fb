"""High-resolution harmonization: quality of the transfer at full size, and the pipeline's speed and peak memory.

Quality. Real photos are made into high-resolution composites: each photo (scikit-image's, from the `[dev]` extras,
451-1411 px; and `../shared/data/HOutdoor` real images, 256 px) is centre-cropped to a square and upscaled to S x S
(S = 1024, 2048, 4096), or kept at its native size ("native"); a real object mask from HOutdoor is resized to it;
inside the mask the photo is recoloured (a global colour change: cross-channel matrix, offset, gamma, saturation;
half of the samples also get a smooth spatially varying illumination field). Each method gets the composite and the
mask at full size and a prediction at the working size, and is scored by fPSNR against the real photo at full size
(mask > 0.5, values 0..255, prediction clamped, not rounded; per-image mean):

  (a)  affine  -- the pipeline's default: local affine colour transform fitted at the working size, applied at S
  (a') offset  -- a smooth additive correction (the transform's matrix fixed to the identity)
  (b)  resize  -- naive: resize the prediction to S, blend with the mask
  (c)  unchanged composite

The prediction at the working size comes from `--model PATH` (a trained checkpoint), or by default from an oracle:
a perfect low-resolution model, `m * real + (1 - m) * composite` at the working size. The oracle isolates what the
transfer itself loses (an untrained model would make the comparison meaningless).

Speed and memory. The full pipeline call (PIL image and mask in, PIL image out) at S = 1024, 2048, 4096 with the
given model config at the working size, each size and method in a fresh process: seconds per image (median of
--repeats) and the peak resident memory above what the process held before the call (input images excluded).

    python benchmarks/bench_highres.py                       # quality table + speed table + grid
    python benchmarks/bench_highres.py --skip_speed --sizes 1024 --max_photos 3
    python benchmarks/bench_highres.py --model outputs/demo  # a trained model instead of the oracle
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lemart_hf.highres import _resize, transfer_harmonization

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKIMAGE_PHOTOS = (
    "retina.jpg",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "rocket.jpg",
    "coffee.png",
    "astronaut.png",
    "chelsea.png",
)
METHODS = ("affine", "offset", "resize")


# ----- data -----------------------------------------------------------------------------------------------------
def skimage_photos(limit: int) -> list[tuple[str, torch.Tensor]]:
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    photos = []
    for name in SKIMAGE_PHOTOS[:limit]:
        with Image.open(folder / name) as image:
            photos.append((name, to_tensor(image.convert("RGB"))))
    return photos


def houtdoor_photos(limit: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, real (3, 256, 256), its own object mask (1, 256, 256)) from ../shared/data/HOutdoor, if present."""
    root = SHARED / "HOutdoor"
    if not root.is_dir():
        return []
    names = sorted((root / "HOutdoor_test.txt").read_text().split())
    pairs, seen = [], set()
    for name in names:
        real_name, mask_id = name.split("_")[:2]
        if real_name in seen:
            continue
        mask = to_tensor(Image.open(root / "masks" / f"{real_name}_{mask_id}.png").convert("L"))
        if not 0.05 < (mask > 0.5).float().mean() < 0.5:
            continue
        seen.add(real_name)
        pairs.append((real_name, to_tensor(Image.open(root / "real_images" / f"{real_name}.jpg").convert("RGB")), mask))
        if len(pairs) == limit:
            break
    return pairs


def object_masks(count: int) -> list[torch.Tensor]:
    """Real object masks (1, 256, 256) covering 5-50% of the image; ellipses if ../shared/data is absent."""
    masks = [mask for _, _, mask in houtdoor_photos(count)]
    while len(masks) < count:
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
        masks.append((((yy / 0.5) ** 2 + (xx / (0.3 + 0.05 * len(masks))) ** 2) < 1).float()[None])
    return masks


def to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.array(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1).contiguous()


def square(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre square crop, bicubic-resized to `size` (kept at its own size when None)."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = image[:, top : top + side, left : left + side]
    if size is None or size == side:
        return image
    return F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False, antialias=size < side)[
        0
    ].clamp(0, 1)


def full_size_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    return (_resize(mask, (size, size)) > 0.5).float()


def recolour(image: torch.Tensor, generator: torch.Generator, spatial: bool) -> torch.Tensor:
    """A random colour change of the whole image; with `spatial`, times a smooth random illumination field."""

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    matrix = torch.eye(3) * uniform(0.75, 1.2, 3) + uniform(-0.12, 0.12, 3, 3) * (1 - torch.eye(3))
    out = torch.einsum("ck,khw->chw", matrix, image) + uniform(-0.1, 0.1, 3)[:, None, None]
    gray = out.mean(0, keepdim=True)
    out = (gray + uniform(0.5, 1.5, 1) * (out - gray)).clamp(0, 1) ** uniform(0.7, 1.4, 1)
    if spatial:
        field = F.interpolate(
            torch.randn(1, 1, 3, 3, generator=generator), size=image.shape[-2:], mode="bicubic", align_corners=False
        )[0]
        out = out * torch.exp(0.35 * field.clamp(-2, 2))
    return out.clamp(0, 1)


def quantize(image: torch.Tensor) -> torch.Tensor:
    return (image * 255).round() / 255


def fpsnr(prediction: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> float:
    hard = (mask > 0.5).float()
    squared = ((prediction.clamp(0, 1) - real) * 255).pow(2).mul(hard).sum() / (3 * hard.sum())
    return 10 * math.log10(255**2 / max(squared.item(), 1e-6))


# ----- quality --------------------------------------------------------------------------------------------------
def samples(size: int | None, max_photos: int, seed: int):
    """Yield (name, real, composite, mask) at full size; `size=None` keeps skimage photos at their native size."""
    generator = torch.Generator().manual_seed(seed)
    masks = object_masks(max_photos)
    for index, (name, photo) in enumerate(skimage_photos(max_photos)):
        real = quantize(square(photo, size))
        side = real.shape[-1]
        for spatial in (False, True):
            mask = full_size_mask(masks[index % len(masks)], side)
            composite = quantize(mask * recolour(real, generator, spatial) + (1 - mask) * real)
            yield f"skimage/{name}{'+field' if spatial else ''}", real, composite, mask
    if size is not None:
        for name, photo, own_mask in houtdoor_photos(max_photos):
            real = quantize(square(photo, size))
            mask = full_size_mask(own_mask, size)
            composite = quantize(mask * recolour(real, generator, False) + (1 - mask) * real)
            yield f"HOutdoor/{name}", real, composite, mask


def low_resolution_prediction(model, composite, mask, real, working):
    """(prediction, composite_low, mask_low) at the working size: from the model, or the oracle when model is None."""
    composite_low, mask_low = _resize(composite, working), _resize(mask, working)
    if model is None:
        return mask_low * _resize(real, working) + (1 - mask_low) * composite_low, composite_low, mask_low
    with torch.no_grad():
        pixel_values = torch.cat([composite_low, mask_low])[None].to(model.device, model.dtype)
        return model(pixel_values=pixel_values).harmonized[0].float().cpu(), composite_low, mask_low


def quality(args, model) -> dict:
    working = (args.working_size, args.working_size)
    sizes = [None] + [int(s) for s in args.sizes]
    table = {}
    blended = True if model is None else bool(model.config.blend_background)
    for size in sizes:
        label = "native" if size is None else str(size)
        scores = {group: {m: [] for m in (*METHODS, "unchanged")} for group in ("skimage", "HOutdoor")}
        for name, real, composite, mask in samples(size, args.max_photos, args.seed):
            prediction, composite_low, mask_low = low_resolution_prediction(model, composite, mask, real, working)
            group = name.split("/")[0]
            for method in METHODS:
                output = transfer_harmonization(
                    composite,
                    mask,
                    prediction,
                    composite_low,
                    mask_low,
                    method=method,
                    prediction_is_blended=blended,
                    radius=args.radius,
                    eps=args.eps,
                )
                scores[group][method].append(fpsnr(output, real, mask))
            scores[group]["unchanged"].append(fpsnr(composite, real, mask))
            if (
                args.grid
                and size == max(s for s in sizes if s is not None)
                and group == "skimage"
                and name.endswith("coffee.png")
            ):
                save_grid(args.grid, real, composite, mask, prediction, composite_low, mask_low, blended)
        table[label] = {
            g: {m: (statistics.mean(v), len(v)) for m, v in s.items() if v} for g, s in scores.items() if s["affine"]
        }
        for group, row in table[label].items():
            print(
                f"{label:>6} {group:<9} n={row['affine'][1]:<3} "
                + "  ".join(f"{m} {v[0]:6.2f}" for m, v in row.items()),
                flush=True,
            )
    return table


def save_grid(path, real, composite, mask, prediction, composite_low, mask_low, blended):
    """Crops at the mask's edge, at full size: composite | (b) resize | (a) affine | real, and the mask."""
    outputs = {
        m: transfer_harmonization(
            composite, mask, prediction, composite_low, mask_low, method=m, prediction_is_blended=blended
        )
        for m in ("resize", "affine")
    }
    edge = (F.max_pool2d(mask[None], 9, 1, 4)[0] - mask)[0]
    ys, xs = torch.nonzero(edge, as_tuple=True)
    side = min(384, real.shape[-1])
    cy, cx = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    top = max(0, min(cy - side // 2, real.shape[-2] - side))
    left = max(0, min(cx - side // 2, real.shape[-1] - side))
    crop = lambda x: x[:, top : top + side, left : left + side]
    tiles = [composite, outputs["resize"], outputs["affine"], real, mask.expand(3, -1, -1)]
    row = torch.cat([crop(t) for t in tiles], dim=-1)
    Image.fromarray((row.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()).save(path)
    print(f"grid (composite | resize | affine | real | mask, {side}px crops at full size): {path}")


# ----- speed and memory -----------------------------------------------------------------------------------------
def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def resident_mb(reset_peak: bool = False) -> float:
    """Resident memory now (MB); optionally reset the kernel's high-water mark (VmHWM) to it first (Linux)."""
    if reset_peak:
        Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_resident_mb() -> float:
    """Peak resident memory (MB) since the last `resident_mb(reset_peak=True)`."""
    return _status_mb("VmHWM")


def speed_worker(args) -> None:
    """One (size, method) in this process: print a JSON line with seconds per image and peak extra memory."""
    from transformers import pipeline

    import lemart_hf  # noqa: F401
    from lemart_hf import SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor

    torch.manual_seed(0)
    model = SwinIHForHarmonization(SwinIHConfig.from_preset(args.config)).eval()
    processor = SwinIHImageProcessor(size={"height": args.working_size, "width": args.working_size})
    pipe = pipeline(
        "image-harmonization", model=model, image_processor=processor, device=args.device, highres_method=args.method
    )
    size = args.worker_size
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    mask_array = np.zeros((size, size), np.uint8)
    mask_array[size // 4 : 3 * size // 4, size // 5 : 4 * size // 5] = 255
    mask = Image.fromarray(mask_array)
    warm_image, warm_mask = image.resize((96, 96)), mask.resize((96, 96))
    pipe(warm_image, warm_mask)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resident_mb(reset_peak=True)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pipe(image, mask)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = peak_resident_mb()
    # Model alone at the working size, for the split of the time.
    pixel_values = torch.rand(1, 4, args.working_size, args.working_size, device=args.device)
    model_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            pipe.model(pixel_values=pixel_values.to(pipe.model.device))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        model_times.append(time.perf_counter() - start)
    # The transfer alone (what differs between the methods), on tensors already in memory.
    composite = torch.rand(3, size, size, device=args.device)
    full_mask = torch.from_numpy(mask_array).float().div(255)[None].to(args.device)
    working = (args.working_size, args.working_size)
    composite_low, mask_low = _resize(composite, working), _resize(full_mask, working)
    prediction = (composite_low * 0.9 + 0.05).clamp(0, 1)
    transfer_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        transfer_harmonization(composite, full_mask, prediction, composite_low, mask_low, method=args.method)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        transfer_times.append(time.perf_counter() - start)
    result = {
        "transfer_seconds": statistics.median(transfer_times),
        "size": size,
        "method": args.method,
        "seconds": statistics.median(times),
        "model_seconds": statistics.median(model_times),
        "peak_extra_mb": peak - before,
        "input_mb": size * size * 4 / 2**20,
    }
    if args.device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def speed(args) -> list[dict]:
    rows = []
    for size in [int(s) for s in args.sizes]:
        for method in METHODS:
            command = [
                sys.executable,
                __file__,
                "--speed_worker",
                str(size),
                "--method",
                method,
                "--config",
                args.config,
                "--working_size",
                str(args.working_size),
                "--device",
                args.device,
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode:
                print(result.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"speed worker failed for {size} {method}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(
                f"{size:>5} {method:<7} {row['seconds']:7.3f} s/image (model {row['model_seconds']:.3f} s, "
                f"transfer {row['transfer_seconds']:.3f} s)  "
                f"peak +{row['peak_extra_mb']:7.0f} MB (RGB uint8 input itself: {row['input_mb'] * 3 / 4:5.0f} MB)"
                + (f"  GPU peak {row['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in row else ""),
                flush=True,
            )
        by_method = {r["method"]: r for r in rows if r["size"] == size}
        print(
            f"{size:>5} ratio affine / resize: time {by_method['affine']['seconds'] / by_method['resize']['seconds']:.2f}x, "
            f"transfer alone {by_method['affine']['transfer_seconds'] / by_method['resize']['transfer_seconds']:.2f}x, "
            f"peak memory {by_method['affine']['peak_extra_mb'] / max(by_method['resize']['peak_extra_mb'], 1):.2f}x",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1024", "2048", "4096"])
    parser.add_argument("--working_size", type=int, default=256)
    parser.add_argument("--model", help="trained model folder; default: the oracle low-resolution prediction")
    parser.add_argument("--max_photos", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=int, default=None)
    parser.add_argument("--eps", type=float, default=1e-4)
    parser.add_argument("--grid", default="/tmp/highres_grid.png", help="comparison crops PNG ('' for none)")
    parser.add_argument("--config", default="swinih-tiny", help="SwinIH preset timed in the speed part")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip_quality", action="store_true")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--speed_worker", type=int, dest="worker_size", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="affine", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker_size:
        speed_worker(args)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
        f"device {args.device}, working size {args.working_size}"
    )
    if not args.skip_quality:
        model = None
        if args.model:
            from transformers import AutoModelForImageToImage

            import lemart_hf  # noqa: F401

            model = AutoModelForImageToImage.from_pretrained(args.model).eval()
        print(
            f"fPSNR (dB) at full size, prediction at {args.working_size}px from "
            f"{args.model or 'the oracle (ground truth at the working size)'}"
        )
        quality(args, model)
    if not args.skip_speed:
        print(f"pipeline speed, {args.config} at {args.working_size}px")
        speed(args)


if __name__ == "__main__":
    main()
