"""The LEMaRT composer: (composite, mask, original) training triplets from unlabeled photos, online.

``I_c = M * I_t + (1 - M) * I`` where ``I`` is a photo, ``M`` a proposed foreground mask and ``I_t`` the photo
after random visual-attribute perturbations (DESIGN.md §1). The model learns to map (I_c, M) back to I.
"""

from collections.abc import Sequence

import torch

from .masks import MASK_STRATEGIES, make_mask
from .perturbations import DEFAULT_PERTURBATIONS, Perturbation, RandomPerturbations, check_images, runs_densely
from .seeding import generator_on_device

# Images with both sides at least this long have their change checked on every 4th pixel (see foreground_change).
SAMPLED_MIN_SIDE = 64


class LEMaRTComposer:
    """Make LEMaRT composites from a batch of photos, on the photos' device, seeded by a ``torch.Generator``.

    Args:
        mask_strategy: ``"random"`` (default), ``"grid"`` or ``"block"`` (see ``lemart_hf.lemart.masks``).
        mask_ratio: target foreground fraction of each mask, in (0, 1]; with ``random`` / ``grid`` masks, at least
            one patch's worth (``0.5 / grid_size**2``). An empty mask would make the composite its photo.
        grid_size: m, patches per side for the ``random`` and ``grid`` masks.
        perturbations: names from ``PERTURBATIONS`` or ``Perturbation`` objects to draw from.
        min_perturbations, max_perturbations: per sample, a random subset of this many (uniform) perturbations
            is applied in random order.
        min_change: the smallest accepted mean absolute change inside the mask, per sample (values in [0, 1],
            averaged over channels and foreground pixels). A sample below it (e.g. a blur over a flat sky) is
            redrawn up to ``max_redraws`` times; one still below it then gets every foreground value moved by
            ``2 * min_change`` towards mid-grey, so no composite is ever a no-op.
        max_redraws: see ``min_change``.
        dense: how the perturbations run (see ``RandomPerturbations``). Densely, the redraws are drawn up front
            too: ``1 + max_redraws`` candidates per image in one pass, of which the first that changes the
            foreground by ``min_change`` is kept (the same rule as redrawing one at a time), so that a call
            never reads anything back from the device. The two ways draw their random numbers differently: for
            one seed they give different composites of the same distribution. ``None`` (default): densely
            except on CPUs.

    Calling the composer on images (B, 3, H, W) returns a dict of tensors on the images' device and dtype:

    - ``pixel_values`` (B, 4, H, W): the composite RGB in [0, 1] and the mask as 4th channel, exactly the model
      input the image processor produces.
    - ``labels`` (B, 3, H, W): the original images (the input tensor itself, not a copy).
    - ``mask`` (B, 1, H, W): the binary foreground mask (0. or 1.).

    Outside the mask the composite equals the original bit for bit.
    """

    def __init__(
        self,
        mask_strategy: str = "random",
        mask_ratio: float = 0.5,
        grid_size: int = 8,
        perturbations: Sequence[str | Perturbation] = DEFAULT_PERTURBATIONS,
        min_perturbations: int = 1,
        max_perturbations: int = 4,
        min_change: float = 0.03,
        max_redraws: int = 2,
        dense: bool | None = None,
    ):
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"Unknown mask strategy {mask_strategy!r}; expected one of {MASK_STRATEGIES}.")
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1] (0: every composite would be its photo), got {mask_ratio}.")
        if not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"grid_size must be a positive int, got {grid_size!r}.")
        if mask_strategy != "block" and round(mask_ratio * grid_size**2) == 0:
            raise ValueError(
                f"mask_ratio {mask_ratio} selects no patch of the {grid_size}x{grid_size} grid (every composite would "
                f"be its photo); use at least {0.5 / grid_size**2:.3g}."
            )
        if not 0.0 <= min_change <= 0.25:
            raise ValueError(f"min_change must be in [0, 0.25], got {min_change}.")
        if not isinstance(max_redraws, int) or max_redraws < 0:
            raise ValueError(f"max_redraws must be an int >= 0, got {max_redraws!r}.")
        self.mask_strategy = mask_strategy
        self.mask_ratio = mask_ratio
        self.grid_size = grid_size
        self.perturb = RandomPerturbations(perturbations, min_perturbations, max_perturbations)
        self.min_change = min_change
        self.max_redraws = max_redraws
        self.dense = dense

    def __repr__(self) -> str:
        names = [perturbation.name for perturbation in self.perturb.perturbations]
        return (
            f"LEMaRTComposer(mask_strategy={self.mask_strategy!r}, mask_ratio={self.mask_ratio}, "
            f"grid_size={self.grid_size}, perturbations={names}, min_perturbations={self.perturb.min_count}, "
            f"max_perturbations={self.perturb.max_count}, min_change={self.min_change}, "
            f"max_redraws={self.max_redraws}, dense={self.dense})"
        )

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Composite a batch. No gradient flows through it (``images`` may require one: composites are data).

        Args:
            images: (B, 3, H, W) float RGB in [0, 1], on any device. Where the composer does not run densely (on
                CPUs), values outside [0, 1] (e.g. 8-bit data as float) and NaN / inf are refused; densely, checking
                would read back from the device, so they are not.
            generator: source of all randomness. One on another device than the images (e.g. a CPU generator for
                CUDA images) seeds a generator on the images' device from one draw, deterministically. ``None``:
                torch's global RNG.
            mask: optional (B, 1, H, W) foreground masks to perturb inside (e.g. the real object masks of labelled
                pairs) instead of drawing them with ``mask_strategy``; on the images' device, thresholded at 0.5.

        Returns:
            ``{"pixel_values": (B, 4, H, W), "labels": (B, 3, H, W), "mask": (B, 1, H, W)}`` (see the class).
        """
        check_images(images)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
        generator = generator_on_device(generator, images.device)
        batch, _, height, width = images.shape
        if batch == 0 or height == 0 or width == 0:
            raise ValueError(f"Expected a non-empty batch of images, got shape {tuple(images.shape)}.")
        dense = runs_densely(images.device, self.dense)
        if not dense:
            low, high = torch.aminmax(images)
            if not (low >= 0 and high <= 1):  # NaN fails both
                hint = " (8-bit data must be divided by 255)" if 1 < high <= 255 and low >= 0 else ""
                raise ValueError(f"Expected images with values in [0, 1], got [{low:.4g}, {high:.4g}]{hint}.")
        if mask is None:
            mask = make_mask(
                self.mask_strategy,
                batch,
                height,
                width,
                self.mask_ratio,
                self.grid_size,
                generator=generator,
                device=images.device,
                dtype=images.dtype,
            )
        elif not isinstance(mask, torch.Tensor) or mask.shape != (batch, 1, height, width):
            raise ValueError(f"mask must be a tensor of shape {(batch, 1, height, width)}, got {_describe(mask)}.")
        else:
            mask = (mask > 0.5).to(images.dtype)  # binary, without reading anything back from the device
        pixel_values = images.new_empty(batch, 4, height, width)
        perturb_visibly = self._perturb_visibly_at_once if dense else self._perturb_visibly
        composite = perturb_visibly(images, mask, generator, out=pixel_values[:, :3])
        # Paste: lerp with a 0/1 weight returns either end exactly, so the background stays bit-identical.
        torch.lerp(images, composite, mask, out=composite)
        pixel_values[:, 3:] = mask
        return {"pixel_values": pixel_values, "labels": images, "mask": mask}

    def _perturb_visibly(
        self, images: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None, out: torch.Tensor
    ) -> torch.Tensor:
        """Perturbed images (written to ``out``) whose change inside a non-empty mask is at least ``min_change``."""
        perturbed = self.perturb(images, generator, out=out, dense=False)
        change = foreground_change(images, perturbed, mask)
        has_foreground = _has_foreground(mask)
        for attempt in range(self.max_redraws + 1):
            weak = ((change < self.min_change) & has_foreground).nonzero().squeeze(1)
            if weak.numel() == 0:
                break
            originals = images.index_select(0, weak)
            if attempt == self.max_redraws:
                perturbed.index_copy_(0, weak, self._towards_grey(originals))
                break
            redrawn = self.perturb(originals, generator, dense=False)
            redrawn_change = foreground_change(originals, redrawn, mask.index_select(0, weak))
            improved = redrawn_change > change[weak]
            perturbed.index_copy_(0, weak[improved], redrawn[improved])
            change[weak[improved]] = redrawn_change[improved]
        return perturbed

    def _perturb_visibly_at_once(
        self, images: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None, out: torch.Tensor
    ) -> torch.Tensor:
        """``_perturb_visibly`` with every redraw drawn up front, densely, and no read-back from the device."""
        batch, channels, height, width = images.shape
        num_candidates = self.max_redraws + 1
        repeated = images.repeat(num_candidates, 1, 1, 1)
        candidates = self.perturb(repeated, generator, dense=True)
        change = foreground_change(repeated, candidates, mask.repeat(num_candidates, 1, 1, 1))
        visible = (change.view(num_candidates, batch) >= self.min_change) | ~_has_foreground(mask)
        first_visible = visible.to(torch.uint8).argmax(dim=0)  # the first maximum: index 0 where none is visible
        candidates = candidates.view(num_candidates, batch, channels, height, width)
        chosen = candidates[first_visible, torch.arange(batch, device=images.device)]
        return torch.where(visible.any(dim=0).view(-1, 1, 1, 1), chosen, self._towards_grey(images), out=out)

    def _towards_grey(self, images: torch.Tensor) -> torch.Tensor:
        """The fallback for a perturbation too weak to see: every value ``2 * min_change`` closer to mid-grey."""
        step = 2 * self.min_change
        return torch.where(images < 0.5, images + step, images - step)


def _describe(value) -> str:
    return f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _has_foreground(mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the mask, sampled as ``foreground_change`` samples it, has a foreground pixel."""
    return _sampled(mask).amax(dim=(1, 2, 3)) > 0


def foreground_change(images: torch.Tensor, perturbed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) float32 mean absolute difference inside the mask, over channels and foreground pixels.

    Estimated on every 4th pixel in each direction where both sides are at least ``SAMPLED_MIN_SIDE`` pixels (the
    masks are blocks and patches many pixels wide), on every pixel of smaller images; 0 where the sampled mask is
    empty.
    """
    difference = (_sampled(perturbed) - _sampled(images)).abs().float().mean(dim=1, keepdim=True)
    weights = _sampled(mask).float()
    return (difference * weights).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3)).clamp_min(1.0)


def _sampled(tensor: torch.Tensor) -> torch.Tensor:
    stride = 4 if min(tensor.shape[-2:]) >= SAMPLED_MIN_SIDE else 1
    return tensor[..., ::stride, ::stride]
