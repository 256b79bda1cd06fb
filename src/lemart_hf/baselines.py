"""Model-free harmonization baselines, with the same call signature as a model: ``pixel_values -> harmonized``.

- ``composite``: the input unchanged — the floor every method must beat.
- ``color_transfer``: Reinhard et al. (2001) colour transfer in Lab, per image: the foreground's mean and
  standard deviation per Lab channel are moved to the background's, ``(x - mu_fg) / sigma_fg * sigma_bg +
  mu_bg``, applied inside the mask only (``M * transferred + (1 - M) * composite``). Statistics are weighted
  by the mask (soft masks allowed). A sample whose foreground or background is empty is returned unchanged.

Both run on the batch the evaluation loop already has, i.e. at the protocol's size (256x256), not at the
original resolution: the means and standard deviations of a region barely change with a bilinear downscale,
and this way the baselines go through exactly the same loop, resizing and metrics as a model.

Lab conventions (``lab=``): ``"uint8"`` (default) is the 8-bit Lab of OpenCV and of the classic Reinhard
implementations (``cv2.cvtColor(img_uint8, COLOR_RGB2LAB)``: L*255/100, a+128, b+128, each rounded to
0..255; the transferred values clipped and rounded to 0..255; the result rounded to uint8 RGB). It reproduces
the reference row of ``../shared/data/README.md`` on HOutdoor to 0.02%. ``"float"`` is exact CIE Lab (D65,
sRGB) in float, without any rounding (kornia); it is 0.7% higher in MSE / 0.03 dB lower in PSNR there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

EPS = 1e-6


def composite_baseline(pixel_values: torch.Tensor) -> torch.Tensor:
    """The composite unchanged: (B, 4, H, W) pixel_values -> (B, 3, H, W)."""
    return pixel_values[:, :3]


def _masked_mean_std(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    area = weights.sum(dim=(2, 3), keepdim=True)
    safe = area.clamp_min(EPS)
    mean = (x * weights).sum(dim=(2, 3), keepdim=True) / safe
    var = ((x - mean).square() * weights).sum(dim=(2, 3), keepdim=True) / safe
    return mean, var.sqrt(), area


def _rgb_to_lab8(rgb: torch.Tensor) -> torch.Tensor:
    import kornia

    lab = kornia.color.rgb_to_lab(rgb)
    scaled = torch.stack([lab[:, 0] * (255.0 / 100.0), lab[:, 1] + 128.0, lab[:, 2] + 128.0], dim=1)
    return scaled.round().clamp(0.0, 255.0)


def _lab8_to_rgb(lab8: torch.Tensor) -> torch.Tensor:
    import kornia

    lab8 = lab8.clamp(0.0, 255.0).round()
    lab = torch.stack([lab8[:, 0] * (100.0 / 255.0), lab8[:, 1] - 128.0, lab8[:, 2] - 128.0], dim=1)
    return (kornia.color.lab_to_rgb(lab, clip=True) * 255.0).round() / 255.0


def reinhard_color_transfer(
    composite: torch.Tensor, mask: torch.Tensor, *, lab: Literal["uint8", "float"] = "uint8"
) -> torch.Tensor:
    """Moves the foreground's Lab mean/std per channel to the background's, inside the mask.

    Args:
        composite: (B, 3, H, W) RGB in [0, 1].
        mask: (B, 1, H, W) in [0, 1], 1 = foreground (weights for the statistics and the blend).
        lab: ``"uint8"`` (OpenCV's 8-bit Lab, rounding as cv2 does) or ``"float"`` (exact CIE Lab).
    Returns:
        (B, 3, H, W) RGB in [0, 1]; the background is the composite's, untouched.
    """
    import kornia

    if lab not in ("uint8", "float"):
        raise ValueError(f"lab must be 'uint8' or 'float', got {lab!r}")
    composite = composite.float()
    mask = mask.float()
    x = _rgb_to_lab8(composite) if lab == "uint8" else kornia.color.rgb_to_lab(composite)
    mean_fg, std_fg, area_fg = _masked_mean_std(x, mask)
    mean_bg, std_bg, area_bg = _masked_mean_std(x, 1.0 - mask)
    transferred = (x - mean_fg) / std_fg.clamp_min(EPS) * std_bg + mean_bg
    if lab == "uint8":
        rgb = _lab8_to_rgb(transferred)
    else:
        rgb = kornia.color.lab_to_rgb(transferred, clip=True)
    harmonized = mask * rgb + (1.0 - mask) * composite
    valid = (area_fg > 0) & (area_bg > 0)
    return torch.where(valid, harmonized, composite)


def color_transfer_baseline(pixel_values: torch.Tensor, *, lab: Literal["uint8", "float"] = "uint8") -> torch.Tensor:
    """`reinhard_color_transfer` on (B, 4, H, W) pixel_values = cat([composite, mask]) -> (B, 3, H, W)."""
    return reinhard_color_transfer(pixel_values[:, :3], pixel_values[:, 3:4], lab=lab)


BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "composite": composite_baseline,
    "color_transfer": color_transfer_baseline,
}


def get_baseline(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The baseline ``name`` (``"composite"`` or ``"color_transfer"``): a ``pixel_values -> harmonized`` callable."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}") from None
