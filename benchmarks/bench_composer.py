"""Composites per second of the batched LEMaRT composer next to a per-image PIL reference, same run, same photos.

    python benchmarks/bench_composer.py                     # 256x256, batch 64, all torch threads
    python benchmarks/bench_composer.py --threads 1 --rounds 7
    python benchmarks/bench_composer.py --baseline 0236fe2  # also the composer code of that git revision
    python benchmarks/bench_composer.py --device cuda --batch_size 32

All make the same kind of triplet from a 256x256 photo already in memory: a random 8x8-patch mask (ratio
0.5), one to four of the eight perturbations in random order with random strengths from the same ranges,
the paste, and float tensors out (composite + mask, original). References: the composer called on one
image at a time, and what a per-image ``datasets`` transform would do with PIL (uint8 image ops; its blur is
PIL's Gaussian, its cheapest). Rounds alternate between the methods and the best round of each counts, so
that load from other processes on a shared machine hurts all alike; the load average is printed.

A second table counts, per composer call, the kernels it launches (aten operations that compute, not views) and
its read-backs from the device (``nonzero``, ``.item()``, ``bool(tensor)``), for each way the composer can run.
On a GPU these set its cost inside a training step: each launch costs the CPU microseconds whatever the batch,
and each read-back makes the CPU wait until the GPU has finished everything queued before it (the previous
step's backward pass, in a training loop), so the launches of the composer no longer overlap GPU work.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from code_versions import import_as_package, package_name, sources_at_revision
from PIL import Image, ImageEnhance, ImageFilter
from torch.utils._python_dispatch import TorchDispatchMode

from lemart_hf.lemart import PERTURBATIONS, LEMaRTComposer

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds of each method (best one counts).")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--device", default="cpu", help="Device the composer runs on (the reference is CPU-only).")
    parser.add_argument("--image_dir", default=str(PHOTOS), help="Photos to use (textured noise if absent).")
    parser.add_argument("--baseline", default=None, help="Git revision whose composer code to time alongside.")
    return parser.parse_args()


def load_baseline_composer(rev: str) -> type:
    """``LEMaRTComposer`` from the files of src/lemart_hf/lemart/ at git revision ``rev``."""
    names = ("composer.py", "masks.py", "perturbations.py", "seeding.py")
    paths = {name: f"src/lemart_hf/lemart/{name}" for name in names}
    module = import_as_package(package_name("lemart_baseline", rev), sources_at_revision(rev, paths), "composer")
    return module.LEMaRTComposer


class LaunchCounter(TorchDispatchMode):
    """Counts the aten operations that launch work (views excluded) and the read-backs from the device."""

    READ_BACKS = (torch.ops.aten._local_scalar_dense, torch.ops.aten.nonzero)

    def __init__(self):
        super().__init__()
        self.launches = self.read_backs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        is_view = isinstance(result, torch.Tensor) and result._is_view() and not func._schema.is_mutable
        self.launches += not is_view
        self.read_backs += func.overloadpacket in self.READ_BACKS
        return result


def launches_per_call(composer, images: torch.Tensor, calls: int = 4) -> tuple[float, float]:
    """(kernel launches, device read-backs) per composer call on ``images``, averaged over ``calls`` seeds."""
    counter = LaunchCounter()
    with counter:
        for seed in range(calls):
            composer(images, torch.Generator(device=images.device).manual_seed(seed))
    return counter.launches / calls, counter.read_backs / calls


def load_photos(image_dir: Path, count: int, resolution: int) -> list[Image.Image]:
    """``count`` photos at resolution x resolution from ``image_dir`` (repeated if fewer), else textured noise."""
    files = sorted(image_dir.glob("*.jpg")) if image_dir.is_dir() else []
    if files:
        files = (files * count)[:count]
        return [Image.open(f).convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR) for f in files]
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    return [Image.fromarray(c).resize((resolution, resolution), Image.Resampling.BICUBIC) for c in coarse]


def _strength(name: str, rng: np.random.Generator) -> float:
    perturbation = PERTURBATIONS[name]
    magnitude = rng.uniform(perturbation.min_strength, perturbation.max_strength)
    return magnitude * rng.choice([-1.0, 1.0]) if perturbation.signed else magnitude


def _reference_perturbation(image: Image.Image, name: str, strength: float) -> Image.Image:
    """The named perturbation at ``strength`` (same meaning as in lemart_hf.lemart.perturbations), with PIL."""
    if name == "brightness":
        return ImageEnhance.Brightness(image).enhance(np.exp(strength))
    if name == "contrast":
        return ImageEnhance.Contrast(image).enhance(np.exp(strength))
    if name == "saturation":
        return ImageEnhance.Color(image).enhance(np.exp(strength))
    if name == "hue":
        hue, saturation, value = image.convert("HSV").split()
        shift = int(round(strength / (2 * np.pi) * 256))
        hue = hue.point([(level + shift) % 256 for level in range(256)])
        return Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    if name == "white_balance":
        gains = np.array([np.exp(strength), 1.0, np.exp(-strength)])
        gains /= gains @ np.array([0.299, 0.587, 0.114])
        lut = [min(255, int(level * gain + 0.5)) for gain in gains for level in range(256)]
        return image.point(lut)
    if name == "gamma":
        gamma = np.exp(strength)
        return image.point([int(255 * (level / 255) ** gamma + 0.5) for level in range(256)] * 3)
    if name == "defocus_blur":
        return image.filter(ImageFilter.GaussianBlur(radius=strength * image.width))
    if name == "sharpness":
        return ImageEnhance.Sharpness(image).enhance(1 + strength)
    raise ValueError(name)


def reference_composites(photos: list[Image.Image], rng: np.random.Generator, grid_size: int = 8) -> dict:
    """Per-image loop: mask, 1-4 perturbations in random order, paste, float tensors out (the composer's contract)."""
    names = list(PERTURBATIONS)
    pixel_values, labels = [], []
    for photo in photos:
        patches = np.zeros(grid_size * grid_size, dtype=np.uint8)
        patches[rng.permutation(grid_size * grid_size)[: grid_size * grid_size // 2]] = 255
        scale = photo.height // grid_size
        mask = Image.fromarray(patches.reshape(grid_size, grid_size).repeat(scale, 0).repeat(scale, 1))
        perturbed = photo
        for name in rng.permutation(names)[: rng.integers(1, 5)]:
            perturbed = _reference_perturbation(perturbed, name, _strength(name, rng))
        composite = Image.composite(perturbed, photo, mask)
        stacked = np.dstack([np.asarray(composite), np.asarray(mask)])
        pixel_values.append(torch.from_numpy(stacked).permute(2, 0, 1).float().div_(255))
        labels.append(torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().div_(255))
    return {"pixel_values": torch.stack(pixel_values), "labels": torch.stack(labels), "mask": None}


def best_rate(timings: list[float], count: int) -> float:
    return count / min(timings)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = load_photos(Path(args.image_dir), args.batch_size, args.resolution)
    images = torch.from_numpy(np.stack([np.asarray(p) for p in photos])).permute(0, 3, 1, 2).float().div_(255)
    images = images.to(args.device)
    generator = torch.Generator(device=images.device).manual_seed(0)
    rng = np.random.default_rng(0)
    device = images.device.type
    composer = LEMaRTComposer()
    composers = {
        f"LEMaRTComposer, batched ({device}, {torch.get_num_threads()} torch threads)": composer,
        f"same, {'by subsets' if device != 'cpu' else 'dense (the GPU default)'}": LEMaRTComposer(
            dense=device == "cpu"
        ),
    }
    if args.baseline:
        composers[f"LEMaRTComposer of {args.baseline}, batched"] = load_baseline_composer(args.baseline)()

    def synchronize() -> None:
        if images.device.type == "cuda":
            torch.cuda.synchronize()

    def batched(batch_composer) -> callable:
        def run() -> None:
            batch_composer(images, generator)
            synchronize()

        return run

    def per_sample() -> None:
        for index in range(len(images)):
            composer(images[index : index + 1], generator)
        synchronize()

    def pil_reference() -> None:
        reference_composites(photos, rng)

    methods = {name: batched(method_composer) for name, method_composer in composers.items()}
    methods["same composer, per-sample loop (batches of 1)"] = per_sample
    methods["per-image PIL reference (1 thread)"] = pil_reference
    timings = {name: [] for name in methods}
    for method in methods.values():  # warm-up
        method()
    for _ in range(args.rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            timings[name].append(time.perf_counter() - start)

    rates = {name: best_rate(times, len(photos)) for name, times in timings.items()}
    reference_rate = rates["per-image PIL reference (1 thread)"]
    rows = [(name, rate, rate / reference_rate) for name, rate in rates.items()]
    print(
        f"{args.batch_size} composites of {args.resolution}x{args.resolution}, "
        f"best of {args.rounds} alternating rounds; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} (the training scripts set PASSIVE)"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'method':<{width}}  {'composites/s':>12}  {'ratio':>6}")
    for name, rate, ratio in rows:
        print(f"{name:<{width}}  {rate:>12.0f}  {ratio:>5.1f}x")
    batched_name = next(iter(methods))
    median = len(photos) / float(np.median(timings[batched_name]))
    print(f"ratio: against the PIL reference; batched composer's median round: {median:.0f} composites/s")
    print()
    print(f"per call on a batch of {args.batch_size}: {'kernel launches':>15}  {'device read-backs':>17}")
    for name, counted in composers.items():
        launches, read_backs = launches_per_call(counted, images)
        print(f"{name:<{width}}  {launches:>15.0f}  {read_backs:>17.1f}")


if __name__ == "__main__":
    main()
