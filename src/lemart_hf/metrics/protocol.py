"""The evaluation protocol: how images are brought to the size and form the metrics are computed on.

Published harmonization numbers differ by 0.1-0.2 dB depending on how images are resized, so the
protocol is a named, frozen object and every table says which one it used (DESIGN.md §4).

- ``default``: composite, real and prediction resized to 256x256 with antialiased bilinear interpolation
  (``torch.nn.functional.interpolate(..., mode="bilinear", antialias=True)``, which matches PIL's
  ``Image.BILINEAR``); the mask resized the same way, then thresholded at 0.5 (``> 0.5`` is foreground);
  PSNR peak 255.
- ``is2am``: the iS2AM code's variant — bilinear WITHOUT antialiasing (OpenCV ``INTER_LINEAR``), the mask
  kept soft (fMSE weighted by it) and PSNR's peak = the real image's own maximum.

Images that already have the protocol size are passed through untouched (no resampling at all).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Union

import torch
import torch.nn.functional as F

Peak = Union[float, Literal["real_max"]]


@dataclass(frozen=True)
class EvalProtocol:
    """How images are resized and masks treated before the metrics.

    Attributes:
        name: the name tables are labelled with.
        size: (height, width) the metrics are computed at.
        antialias: antialiased bilinear (PIL BILINEAR) when True, plain bilinear (OpenCV INTER_LINEAR) when False.
        binary_mask: threshold the resized mask at 0.5 when True; keep it soft when False.
        peak: PSNR / fPSNR peak on the 0..255 scale, or ``"real_max"`` for each real image's own maximum.
    """

    name: str = "default"
    size: tuple[int, int] = (256, 256)
    antialias: bool = True
    binary_mask: bool = True
    peak: Peak = 255.0

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, EvalProtocol] = {
    "default": EvalProtocol(),
    "is2am": EvalProtocol(name="is2am", antialias=False, binary_mask=False, peak="real_max"),
}


def get_protocol(protocol: str | EvalProtocol = "default") -> EvalProtocol:
    """Returns the named protocol (``"default"`` or ``"is2am"``); an `EvalProtocol` is returned unchanged."""
    if isinstance(protocol, EvalProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}") from None


def resize_image(image: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of (C, H, W) or (B, C, H, W) float tensors; a no-op when the size already matches.

    ``antialias=True`` equals PIL ``Image.BILINEAR`` (on float values, i.e. without rounding to uint8);
    ``antialias=False`` equals OpenCV ``INTER_LINEAR`` (half-pixel centres, no prefilter).
    """
    size = tuple(size)
    if tuple(image.shape[-2:]) == size:
        return image
    batched = image.ndim == 4
    x = image if batched else image.unsqueeze(0)
    if not x.is_floating_point():
        raise TypeError(f"resize_image expects a float tensor, got {x.dtype}")
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return x if batched else x.squeeze(0)


def prepare_mask(mask: torch.Tensor, protocol: str | EvalProtocol = "default") -> torch.Tensor:
    """Resizes a float mask in [0, 1] to the protocol size; thresholds it at 0.5 under a binary-mask protocol."""
    protocol = get_protocol(protocol)
    mask = resize_image(mask.float(), protocol.size, protocol.antialias)
    if protocol.binary_mask:
        mask = (mask > 0.5).to(mask.dtype)
    else:
        mask = mask.clamp(0.0, 1.0)
    return mask


def apply_protocol(
    composite: torch.Tensor | None,
    mask: torch.Tensor,
    real: torch.Tensor | None,
    protocol: str | EvalProtocol = "default",
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Brings one sample (C, H, W) or a batch (B, C, H, W) to the protocol: images resized, mask resized and
    (per protocol) binarised. RGB in [0, 1]; mask in [0, 1] with 1 = foreground. ``None`` passes through.

    This is THE resizing of the evaluation protocol: the iHarmony4 collator, `evaluate_harmonization`, the
    evaluate metric module and the example scripts all call it, so every number is computed the same way.
    """
    protocol = get_protocol(protocol)

    def _resize(x):
        return None if x is None else resize_image(x.float(), protocol.size, protocol.antialias)

    return _resize(composite), prepare_mask(mask, protocol), _resize(real)
