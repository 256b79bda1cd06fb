"""Random visual-attribute perturbations of whole photos (LEMaRT paper §3.2), batched over (B, 3, H, W).

Images are float tensors in [0, 1], channels first. Each perturbation has a strength drawn per sample from a
documented range that stays clear of the identity (so none is a no-op by accident); ``RandomPerturbations``
applies to every sample its own random subset of them, in its own random order, with its own strengths.

| name          | strength s per sample                   | effect                                              |
| ------------- | --------------------------------------- | --------------------------------------------------- |
| brightness    | +-[0.15, 0.5]  log gain                 | rgb * e^s: gain 0.61-0.86 or 1.16-1.65              |
| contrast      | +-[0.2, 0.7]   log factor               | spread around the mean luma scaled by e^s           |
| saturation    | +-[0.25, 1.0]  log factor               | spread around each pixel's luma scaled by e^s       |
| hue           | +-[0.17, 0.6]  radians (10-35 degrees)  | rotation of the colour wheel about the grey axis    |
| white_balance | +-[0.1, 0.35]  log red / blue gain      | colour temperature: red e^s, blue e^-s, same luma   |
| gamma         | +-[0.2, 0.7]   log gamma                | tone curve through 0 and 1, x^(e^s) at 0.5          |
| defocus_blur  | [0.004, 0.012] disk radius / short side | disk (lens defocus) blur, 1-3 px at 256x256 (>= 1)  |
| sharpness     | [0.8, 3.0]     unsharp amount           | x + s (x - smooth3x3(x)), as PIL's Sharpness 1 + s  |

The ranges were set against real composites (``../shared/data``). Inside the pasted region, HOutdoor's
composites differ from their real images by a mean absolute 0.07 / 0.16 / 0.25 (5th percentile / median /
95th percentile, values in [0, 1]); ``LEMaRTComposer``'s defaults (one to four of these) give 0.04 / 0.10 /
0.22 on ../shared/data/photos: the same kind of shifts, somewhat milder on the whole, and with blur and
sharpness differences that colour-transfer composites lack.

The first five are affine colour maps (rgb -> M rgb + t, per sample); ``RandomPerturbations`` composes runs
of them into one matrix before touching the pixels.
"""

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Largest defocus radius, as a fraction of the short side; the blur kernel is sized for it (no device read-back).
DEFOCUS_MAX_STRENGTH = 0.012

# Rec. 601 luma weights, for "grey" in contrast, saturation and white balance.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Perturbation:
    """One visual-attribute perturbation and the range of its per-sample random strength.

    The strength of a sample is ``sign * magnitude`` with ``magnitude`` uniform in [min_strength, max_strength]
    and, when ``signed``, ``sign`` = +-1 with equal odds (else +1). Exactly one of the two maps is set:

    - ``color_transform(strength (b,), mean_rgb (b, 3)) -> (b, 3, 4)``: an affine colour map ``[M | t]``
      (rgb -> M @ rgb + t) for images whose current mean colour is ``mean_rgb``; float32.
    - ``apply(images (b, 3, H, W) in [0, 1], strength (b,)) -> (b, 3, H, W) in [0, 1]``: tone curves and
      filters; may overwrite and return ``images``.

    ``uses_mean`` marks a ``color_transform`` that depends on ``mean_rgb`` (contrast pivots around the mean luma);
    the others are built once per batch. ``keeps_mean`` marks an ``apply`` that leaves the mean colour unchanged
    (a filter whose kernel sums to 1), so the mean estimate need not run it.
    """

    name: str
    min_strength: float
    max_strength: float
    signed: bool
    color_transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    uses_mean: bool = False
    keeps_mean: bool = False

    def sample_strength(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """(batch_size,) float32 strengths: magnitude uniform in [min, max], random sign when ``signed``."""
        uniforms = torch.rand(2, batch_size, generator=generator, device=device)
        magnitude = self.min_strength + (self.max_strength - self.min_strength) * uniforms[0]
        if not self.signed:
            return magnitude
        return torch.where(uniforms[1] < 0.5, -magnitude, magnitude)


def _identity_affine(strength: torch.Tensor) -> torch.Tensor:
    """(b, 3, 4) identity colour maps."""
    return torch.eye(3, 4, device=strength.device).expand(strength.shape[0], 3, 4).clone()


def _luma_weights(device: torch.device) -> torch.Tensor:
    return torch.tensor(LUMA_WEIGHTS, device=device)


def brightness_transform(strength: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """rgb * e^strength."""
    return _identity_affine(strength) * strength.exp().view(-1, 1, 1)


def contrast_transform(strength: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """mean_luma + e^strength * (rgb - mean_luma), mean_luma = the image's mean luma (from ``mean_rgb``)."""
    factor = strength.exp().view(-1, 1)
    mean_luma = (mean_rgb @ _luma_weights(strength.device)).view(-1, 1)
    affine = _identity_affine(strength) * factor.unsqueeze(-1)
    affine[:, :, 3] = (1 - factor) * mean_luma
    return affine


def saturation_transform(strength: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """luma + e^strength * (rgb - luma), per pixel (e^strength < 1 desaturates)."""
    factor = strength.exp().view(-1, 1, 1)
    to_grey = _luma_weights(strength.device).expand(3, 3)
    affine = _identity_affine(strength)
    affine[:, :, :3] = factor * affine[:, :, :3] + (1 - factor) * to_grey
    return affine


def hue_transform(strength: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """Rotation by ``strength`` radians about the grey axis (1, 1, 1): shifts hue, keeps greys and the mean."""
    axis = torch.full((3,), 1 / math.sqrt(3), device=strength.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=strength.device)
    cross = cross / math.sqrt(3)  # k x (.) for the unit grey axis k
    cos, sin = strength.cos().view(-1, 1, 1), strength.sin().view(-1, 1, 1)
    rotation = cos * torch.eye(3, device=strength.device) + sin * cross + (1 - cos) * torch.outer(axis, axis)
    affine = _identity_affine(strength)
    affine[:, :, :3] = rotation
    return affine


def white_balance_transform(strength: torch.Tensor, mean_rgb: torch.Tensor) -> torch.Tensor:
    """Colour temperature: red gain e^s, blue gain e^-s (s > 0 warmer), rescaled so that grey keeps its luma."""
    gains = torch.stack([strength.exp(), torch.ones_like(strength), (-strength).exp()], dim=1)
    gains = gains / (gains @ _luma_weights(strength.device)).unsqueeze(1)
    affine = torch.zeros(strength.shape[0], 3, 4, device=strength.device)
    affine[:, :, :3] = torch.diag_embed(gains)
    return affine


def apply_gamma(images: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Gamma-like tone curve with gamma = e^strength, in place.

    Schlick's rational curve x / (k (1 - x) + 1), k = 2^gamma - 2: monotone, maps [0, 1] onto itself and
    equals x^gamma at 0, 0.5 and 1 (elsewhere within 0.03 of it for gamma in [0.8, 1.25], 0.07-0.11 at gamma
    2 or 0.5, where it bends less sharply near black), at a fraction of the cost of ``pow`` on a CPU. Computed
    as 1 / ((1 + k) / x - k) so that it runs in place (x = 0 gives 1 / inf = 0).
    """
    bend = (2 ** strength.exp() - 2).to(images.dtype).view(-1, 1, 1, 1)
    # The clamp catches rounding above 1 in half precision (up to 1.008 in bfloat16).
    return images.reciprocal_().mul_(1 + bend).sub_(bend).reciprocal_().clamp_(0, 1)


def apply_defocus_blur(images: torch.Tensor, strength: torch.Tensor, max_strength: float | None = None) -> torch.Tensor:
    """Disk (lens defocus) blur of radius ``strength * min(H, W)`` pixels (at least 1), replicate-padded.

    The disk has an antialiased rim (a pixel's weight is its coverage estimate clamp(r + 0.5 - distance, 0, 1)),
    so the radius acts continuously. All samples share one kernel size, each with its own disk inside it: one
    grouped convolution, which is what a CPU runs fastest. The kernel is sized for ``max_strength`` (strengths
    are clamped to it) or, when that is ``None``, for the largest strength given, which reads it back from the
    device (a synchronisation on GPUs).
    """
    short_side = min(images.shape[-2:])
    if max_strength is not None:
        strength = strength.clamp(max=max_strength)
    radius = (strength * short_side).clamp_min(1.0)
    largest = max(max_strength * short_side, 1.0) if max_strength is not None else float(radius.max())
    half = math.floor(largest + 0.5)
    offsets = torch.arange(-half, half + 1, device=images.device, dtype=torch.float32)
    distance = torch.hypot(offsets.view(-1, 1), offsets.view(1, -1))
    kernels = (radius.view(-1, 1, 1) + 0.5 - distance).clamp(0, 1)
    return convolve_per_sample(images, kernels / kernels.sum(dim=(1, 2), keepdim=True)).clamp_(0, 1)


def apply_sharpness(images: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Unsharp masking ``x + s * (x - smooth(x))``, clamped to [0, 1]; overwrites ``images``.

    ``smooth`` is PIL's ImageFilter.SMOOTH kernel ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, replicate padding), the
    one ImageEnhance.Sharpness blends against, computed as (3x3 box sum + 4 x) / 13 with separable shifted sums:
    cheaper on CPUs than a convolution, which would need a channels-last copy.
    """
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    rows = padded[..., :, :-2] + padded[..., :, 1:-1]
    rows += padded[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :]
    box += rows[..., 2:, :]
    amount = (strength / 13).to(images.dtype).view(-1, 1, 1, 1)
    # x + s (x - (box + 4 x) / 13) = x (1 + 9 s / 13) - (s / 13) box
    return images.mul_(1 + 9 * amount).sub_(box.mul_(amount)).clamp_(0, 1)


def convolve_per_sample(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each sample with its own (odd-sized) kernel, the same for its three channels.

    Args:
        images: (b, 3, H, W).
        kernels: (b, k, k), k odd; correlation, replicate padding.

    Returns:
        (b, 3, H, W) of the images' dtype (channels-last strides on CPUs).
    """
    batch, channels, height, width = images.shape
    half = kernels.shape[-1] // 2
    weight = kernels.to(images.dtype).repeat_interleave(channels, dim=0).unsqueeze(1)
    # A grouped (depthwise) convolution with one group per sample and channel. oneDNN runs it several times
    # faster in channels-last layout on CPUs, so the padded input is built there directly.
    memory_format = torch.channels_last if images.device.type == "cpu" else torch.contiguous_format
    padded = torch.empty(
        (1, batch * channels, height + 2 * half, width + 2 * half),
        dtype=images.dtype,
        device=images.device,
        memory_format=memory_format,
    )
    padded[:, :, half : half + height, half : half + width] = images.reshape(1, batch * channels, height, width)
    padded[:, :, :half, half : half + width] = padded[:, :, half : half + 1, half : half + width]
    last_row = padded[:, :, half + height - 1 : half + height, half : half + width]
    padded[:, :, half + height :, half : half + width] = last_row
    padded[:, :, :, :half] = padded[:, :, :, half : half + 1]
    padded[:, :, :, half + width :] = padded[:, :, :, half + width - 1 : half + width]
    filtered = F.conv2d(padded, weight, groups=batch * channels)
    return filtered.view(batch, channels, height, width)


PERTURBATIONS: dict[str, Perturbation] = {
    perturbation.name: perturbation
    for perturbation in (
        Perturbation("brightness", 0.15, 0.5, signed=True, color_transform=brightness_transform),
        Perturbation("contrast", 0.2, 0.7, signed=True, color_transform=contrast_transform, uses_mean=True),
        Perturbation("saturation", 0.25, 1.0, signed=True, color_transform=saturation_transform),
        Perturbation("hue", 0.17, 0.6, signed=True, color_transform=hue_transform),
        Perturbation("white_balance", 0.1, 0.35, signed=True, color_transform=white_balance_transform),
        Perturbation("gamma", 0.2, 0.7, signed=True, apply=apply_gamma),
        Perturbation(
            "defocus_blur",
            0.004,
            DEFOCUS_MAX_STRENGTH,
            signed=False,
            apply=functools.partial(apply_defocus_blur, max_strength=DEFOCUS_MAX_STRENGTH),
            keeps_mean=True,
        ),
        Perturbation("sharpness", 0.8, 3.0, signed=False, apply=apply_sharpness, keeps_mean=True),
    )
}
"""Registry of the built-in perturbations by name; add a ``Perturbation`` here (or pass it) to extend."""

DEFAULT_PERTURBATIONS = tuple(PERTURBATIONS)


# On CPUs the pixel work runs on chunks of at most this many pixels (8 images at 256x256): temporaries then stay
# in cache and reuse heap memory instead of faulting in fresh pages, several times faster than whole-batch passes
# (and the grouped convolution of the blur slows down sharply with many channels). GPUs take the batch at once.
CPU_CHUNK_PIXELS = 8 * 256 * 256


@dataclass(frozen=True)
class _PerturbationPlan:
    """Per-sample random draws for a batch of B images and S = max_count slots, with composed colour runs.

    slot_ops (B, S): index of the perturbation in each slot, -1 for unused slots. strengths (B, num perturbations).
    first_run (B, 3, 4): colour maps before the first pixel perturbation (all of them if there is none).
    runs_before (B, S, 3, 4): at a slot with a later pixel perturbation, the colour maps since the previous one
    (identity elsewhere). final_run (B, 3, 4): colour maps after the last pixel perturbation (identity if none).
    last_pixel_slot (B,): slot of the last pixel perturbation, -1 if none.
    """

    slot_ops: torch.Tensor
    strengths: torch.Tensor
    first_run: torch.Tensor
    runs_before: torch.Tensor
    final_run: torch.Tensor
    last_pixel_slot: torch.Tensor


class RandomPerturbations:
    """Per sample: a random subset of ``perturbations`` in random order, each with a random strength.

    The subset size is uniform in [min_count, max_count]; the order is a uniform random permutation. Results are
    clamped to [0, 1] after every tone curve and filter and after every run of consecutive colour maps, which is
    composed into one map first (so there is no clamp between two colour maps in a row).

    How it stays fast (no loop over samples, few passes over the pixels): a sample's sequence splits into runs
    of colour maps separated by "pixel" perturbations (tone curves, filters). Each run is composed into one
    3x4 matrix first, on (B, 3, 4) tensors only. The pixels are then touched once per run and once per pixel
    perturbation: one batched matrix product maps every image to its state before its first pixel perturbation
    (or to its final result), then each slot's pixel perturbations run with the run before them and, where it is
    a sample's last one, the run after it. Contrast pivots around the image's mean luma as estimated from the
    original mean colour carried through the preceding perturbations.

    The pixel steps run in one of two ways, with the same result (to float rounding):

    - by subsets (CPUs): each (slot, pixel perturbation) processes only the samples that chose it, in cache-sized
      chunks; the least arithmetic, but it reads which samples those are back from the device.
    - densely (the default on GPUs): every slot runs each pixel perturbation on the whole batch and keeps it where
      chosen. More arithmetic, but a fixed sequence of batched kernels with no read-back from the device, so a
      training loop never waits for its GPU here and the CPU-side cost is a few hundred kernel launches.

    Args:
        perturbations: names from ``PERTURBATIONS`` or ``Perturbation`` objects.
        min_count, max_count: bounds of the number of perturbations per sample.
    """

    def __init__(
        self,
        perturbations: Sequence[str | Perturbation] = DEFAULT_PERTURBATIONS,
        min_count: int = 1,
        max_count: int = 4,
    ):
        if isinstance(perturbations, str):
            raise ValueError(f"perturbations must be a list of names or Perturbation objects, got {perturbations!r}.")
        perturbations = tuple(perturbations)  # any iterable, read once
        unknown = [p for p in perturbations if isinstance(p, str) and p not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"Unknown perturbation(s) {unknown}; the built-in ones are {sorted(PERTURBATIONS)}.")
        self.perturbations = tuple(PERTURBATIONS[p] if isinstance(p, str) else p for p in perturbations)
        if not (isinstance(min_count, int) and isinstance(max_count, int)):
            raise ValueError(f"min_count and max_count must be ints, got {min_count!r} and {max_count!r}.")
        if not 1 <= min_count <= max_count <= len(self.perturbations):
            raise ValueError(
                f"Need 1 <= min_count <= max_count <= {len(self.perturbations)} (the number of perturbations), "
                f"got min_count={min_count}, max_count={max_count}."
            )
        self.min_count, self.max_count = min_count, max_count
        # (index, perturbation) pairs: the pixel ones, the colour maps that depend on the current mean, and the pixel
        # ones that move the mean.
        self._pixel_ops = [(i, p) for i, p in enumerate(self.perturbations) if p.apply is not None]
        self._mean_dependent = [(i, p) for i, p in enumerate(self.perturbations) if p.uses_mean]
        self._mean_moving = [(i, p) for i, p in self._pixel_ops if not p.keeps_mean]

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        out: torch.Tensor | None = None,
        dense: bool | None = None,
    ) -> torch.Tensor:
        """Perturb a batch.

        Args:
            images: (B, 3, H, W) float in [0, 1]; not modified.
            generator: source of all randomness, on the images' device (None: torch's global RNG).
            out: optional (B, 3, H, W) destination whose per-sample (3, H, W) blocks are contiguous (e.g. the
                first three channels of a (B, 4, H, W) buffer).
            dense: run the pixel steps densely (see the class); ``None``: densely except on CPUs.

        Returns:
            (B, 3, H, W) perturbed images in [0, 1], same dtype and device (``out`` when given).
        """
        check_images(images)
        batch, _, height, width = images.shape
        plan = self._plan(images, generator)
        if out is None:
            out = torch.empty_like(images, memory_format=torch.contiguous_format)
        dense = runs_densely(images.device, dense)
        chunk_size = max(1, batch if dense else CPU_CHUNK_PIXELS // max(1, height * width))

        # Every image to its state right before its first pixel perturbation, or straight to its result.
        for start in range(0, batch, chunk_size):
            part = slice(start, start + chunk_size)
            apply_affine(images[part], plan.first_run[part], out=out[part])
        if dense:
            self._apply_pixel_steps_densely(out, plan)
            return out
        # Then each (slot, pixel perturbation) on the samples that chose it, a chunk of them at a time.
        for slot in range(self.max_count):
            for op_index, _ in self._pixel_ops:
                chosen = (plan.slot_ops[:, slot] == op_index).nonzero().squeeze(1)
                if chosen.numel() == 0:
                    continue
                for piece in chosen.split(chunk_size):
                    self._apply_pixel_step(out, piece, slot, op_index, plan)
        return out

    def _apply_pixel_step(
        self, out: torch.Tensor, chosen: torch.Tensor, slot: int, op_index: int, plan: _PerturbationPlan
    ) -> None:
        """Samples ``chosen`` of ``out``: colour run before, the pixel perturbation, final run if it is the last."""
        identity = torch.eye(3, 4, device=out.device)
        subset = out.index_select(0, chosen)
        subset = apply_affine(subset, plan.runs_before[chosen, slot], skip_identity=True)
        subset = self.perturbations[op_index].apply(subset, plan.strengths[chosen, op_index])
        is_last = (plan.last_pixel_slot[chosen] == slot).view(-1, 1, 1)
        final_run = torch.where(is_last, plan.final_run[chosen], identity)
        subset = apply_affine(subset, final_run, skip_identity=True)
        out.index_copy_(0, chosen, subset)

    def _apply_pixel_steps_densely(self, out: torch.Tensor, plan: _PerturbationPlan) -> None:
        """Every slot: its colour run, each pixel perturbation where chosen, the final run where it is the last.

        Identity maps (samples without a pixel step in the slot) leave the pixels bit-identical: the matrix
        product adds exact zeros and the clamp is a no-op on values already in [0, 1].
        """
        identity = torch.eye(3, 4, device=out.device)
        for slot in range(self.max_count):
            op_at_slot = plan.slot_ops[:, slot].view(-1, 1, 1, 1)
            state = apply_affine(out, plan.runs_before[:, slot])
            for op_index, perturbation in self._pixel_ops:
                changed = perturbation.apply(state.clone(), plan.strengths[:, op_index])
                state = torch.where(op_at_slot == op_index, changed, state)
            is_last = (plan.last_pixel_slot == slot).view(-1, 1, 1)
            apply_affine(state, torch.where(is_last, plan.final_run, identity), out=out)

    def _plan(self, images: torch.Tensor, generator: torch.Generator | None) -> _PerturbationPlan:
        """Draw subsets, orders and strengths, and compose each run of colour maps into one (3, 4) matrix."""
        batch, device, num_slots = images.shape[0], images.device, self.max_count
        counts = (
            self.min_count
            + (torch.rand(batch, generator=generator, device=device) * (num_slots - self.min_count + 1)).long()
        )
        order = torch.rand(batch, len(self.perturbations), generator=generator, device=device).argsort(dim=1)
        strengths = torch.stack([p.sample_strength(batch, generator, device) for p in self.perturbations], dim=1)
        slot_numbers = torch.arange(num_slots, device=device)
        slot_ops = torch.where(slot_numbers < counts.unsqueeze(1), order[:, :num_slots], -1)

        identity = torch.eye(3, 4, device=device).expand(batch, 3, 4)
        mean_rgb = _mean_rgb(images)
        # (B, P + 1, 3, 4): each perturbation's colour map (identity for pixel ones), an identity last, so that
        # the op index -1 of unused slots picks it. Maps that depend on the current mean are made per slot below.
        all_maps = torch.stack(
            [
                identity if p.color_transform is None or p.uses_mean else p.color_transform(strengths[:, i], mean_rgb)
                for i, p in enumerate(self.perturbations)
            ]
            + [identity],
            dim=1,
        )
        uses_pixels = torch.tensor([p.apply is not None for p in self.perturbations] + [False], device=device)
        rows = torch.arange(batch, device=device)

        runs_before = identity.unsqueeze(1).repeat(1, num_slots, 1, 1)
        run, first_run = identity.clone(), identity.clone()
        has_pixel_step = torch.zeros(batch, dtype=torch.bool, device=device)
        last_pixel_slot = torch.full((batch,), -1, device=device)
        for slot in range(num_slots):
            op_at_slot = slot_ops[:, slot]
            # This slot's colour map per sample (identity for pixel perturbations and unused slots).
            step = all_maps[rows, op_at_slot]
            for op_index, perturbation in self._mean_dependent:
                color_map = perturbation.color_transform(strengths[:, op_index], mean_rgb)
                step = torch.where((op_at_slot == op_index).view(-1, 1, 1), color_map, step)
            run = _compose(step, run)
            mean_rgb = _transform_colors(step, mean_rgb).clamp(0, 1)

            # A pixel perturbation ends the run: the first run goes to the batched first pass, later ones wait
            # for their pixel step.
            pixel_step = uses_pixels[op_at_slot]  # op index -1 (unused slot) reads the trailing False
            first_run = torch.where((pixel_step & ~has_pixel_step).view(-1, 1, 1), run, first_run)
            runs_before[:, slot] = torch.where((pixel_step & has_pixel_step).view(-1, 1, 1), run, identity)
            run = torch.where(pixel_step.view(-1, 1, 1), identity, run)
            has_pixel_step |= pixel_step
            last_pixel_slot = torch.where(pixel_step, slot, last_pixel_slot)
            for op_index, perturbation in self._mean_moving:
                moved = perturbation.apply(mean_rgb.view(batch, 3, 1, 1).clone(), strengths[:, op_index])
                mean_rgb = torch.where((op_at_slot == op_index).view(-1, 1), moved.view(batch, 3), mean_rgb)
        first_run = torch.where(has_pixel_step.view(-1, 1, 1), first_run, run)
        final_run = torch.where(has_pixel_step.view(-1, 1, 1), run, identity)
        return _PerturbationPlan(slot_ops, strengths, first_run, runs_before, final_run, last_pixel_slot)


def check_images(images) -> None:
    """`ValueError` unless ``images`` is a float tensor (B, 3, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"Expected a torch.Tensor of images (B, 3, H, W) in [0, 1], got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"Expected float images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}.")


def runs_densely(device: torch.device, dense: bool | None) -> bool:
    """Whether the pixel steps run densely (see ``RandomPerturbations``): ``dense`` if given, else except on CPUs."""
    return device.type != "cpu" if dense is None else dense


def apply_affine(
    images: torch.Tensor, affine: torch.Tensor, out: torch.Tensor | None = None, skip_identity: bool = False
) -> torch.Tensor:
    """rgb -> clamp(M @ rgb + t, 0, 1) per sample.

    Args:
        images: (b, 3, H, W); not modified, and must not share memory with ``out``.
        affine: (b, 3, 4) maps ``[M | t]``.
        out: optional (b, 3, H, W) destination; each sample's (3, H, W) block must be contiguous.
        skip_identity: return ``images`` itself when every map is the identity (the check reads the device, so
            it pays off on CPUs only).

    Returns:
        (b, 3, H, W) mapped images (``out`` when given).
    """
    if skip_identity and bool((affine == torch.eye(3, 4, device=affine.device)).all()):
        return images
    batch, channels, height, width = images.shape
    affine = affine.to(images.dtype)
    if out is None:
        out = torch.empty_like(images, memory_format=torch.contiguous_format)
    flat_out = out.view(batch, channels, height * width)
    torch.baddbmm(affine[:, :, 3:], affine[:, :, :3], images.reshape(batch, channels, height * width), out=flat_out)
    return out.clamp_(0, 1)


def _compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """(b, 3, 4) affine maps: outer o inner."""
    composed = outer[:, :, :3] @ inner
    composed[:, :, 3] += outer[:, :, 3]
    return composed


def _transform_colors(affine: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """(b, 3, 4) maps applied to (b, 3) colours, unclamped."""
    return (affine[:, :, :3] @ colors.unsqueeze(-1)).squeeze(-1) + affine[:, :, 3]


def _mean_rgb(images: torch.Tensor) -> torch.Tensor:
    """(b, 3) float32 mean colour, estimated on every 4th pixel in each direction (plenty for a mean)."""
    return images[..., ::4, ::4].float().mean(dim=(2, 3))
