"""MSE, PSNR, fMSE and fPSNR per image, batched, exactly as the harmonization literature computes them.

All functions take RGB batches (B, 3, H, W) in [0, ``value_range``] (1.0 by default, the package's
contract) and work on the 0..255 scale internally: predictions are clamped to [0, 255] (not rounded).
They return one value per image (shape (B,), float64) so callers can average per subset and overall.

- ``MSE   = mean over H x W x 3 of (pred - real)^2``
- ``PSNR  = 10 log10(peak^2 / MSE)``
- ``fMSE  = sum(M * (pred - real)^2) / (3 * sum(M))``   (M: the mask, binary or soft)
- ``fPSNR = 10 log10(peak^2 / fMSE)``

``peak`` is 255 by default or ``"real_max"`` (each real image's own maximum, as in the iS2AM code).

Degenerate cases, defined rather than left to divide by zero:

- A perfect prediction (MSE = 0): MSE is floored at ``MIN_MSE`` = 1e-6 (on the 0..255^2 scale, the epsilon of
  the iS2AM code) inside the logarithm only, so PSNR is 10 log10(255^2 / 1e-6) = 108.13 dB, not inf.
- An empty foreground (sum M == 0, e.g. a tiny object that vanished when the mask was resized and
  thresholded): fMSE and fPSNR are undefined and returned as NaN. Aggregates (`evaluate_harmonization`, the
  evaluate module) leave such images out of the fMSE / fPSNR means and report how many there were
  (``empty_foreground``). The iS2AM code instead divides by ``sum M + 1e-6`` and so counts them as a perfect
  fMSE = 0, which flatters a method; iHarmony4's test masks are never empty at 256x256, so the two agree on it.
- A prediction with NaN values (infinite ones are clamped like any): its MSE is NaN. `aggregate` counts it in
  ``non_finite`` and lets it make the means NaN, rather than dropping it (or taking it for an empty foreground).
"""

from __future__ import annotations

import math

import torch

from .protocol import EvalProtocol, Peak, apply_protocol, get_protocol

MIN_MSE = 1e-6
METRIC_NAMES = ("mse", "psnr", "fmse", "fpsnr")


def _to_255(x: torch.Tensor, value_range: float) -> torch.Tensor:
    x = x.float()
    return x if value_range == 255.0 else x * (255.0 / value_range)


def _check(predictions: torch.Tensor, references: torch.Tensor, masks: torch.Tensor | None = None) -> None:
    if predictions.ndim != 4 or predictions.shape != references.shape:
        raise ValueError(
            f"predictions and references must be (B, C, H, W) of the same shape, got "
            f"{tuple(predictions.shape)} and {tuple(references.shape)}"
        )
    if masks is not None:
        b, _, h, w = predictions.shape
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != b or tuple(masks.shape[-2:]) != (h, w):
            raise ValueError(f"masks must be (B, 1, H, W) = ({b}, 1, {h}, {w}), got {tuple(masks.shape)}")


def _as_batched_mask(masks: torch.Tensor) -> torch.Tensor:
    return masks.unsqueeze(1) if masks.ndim == 3 else masks


def squared_error(predictions: torch.Tensor, references: torch.Tensor, value_range: float = 1.0) -> torch.Tensor:
    """(B, C, H, W) squared differences on the 0..255 scale, the prediction clamped to [0, 255]."""
    pred = _to_255(predictions, value_range).clamp(0.0, 255.0)
    return (pred - _to_255(references, value_range)).square()


def _peak_squared(peak: Peak, references: torch.Tensor, value_range: float) -> torch.Tensor | float:
    if isinstance(peak, str):
        if peak != "real_max":
            raise ValueError(f"peak must be a number or 'real_max', got {peak!r}")
        return _to_255(references, value_range).amax(dim=(1, 2, 3)).double().square()
    return float(peak) ** 2


def _psnr_from_mse(mse: torch.Tensor, peak_squared: torch.Tensor | float) -> torch.Tensor:
    return 10.0 * torch.log10(peak_squared / mse.clamp_min(MIN_MSE))


def mse(predictions: torch.Tensor, references: torch.Tensor, *, value_range: float = 1.0) -> torch.Tensor:
    """Per-image MSE (B,) over H x W x C on the 0..255 scale."""
    _check(predictions, references)
    return squared_error(predictions, references, value_range).flatten(1).sum(1, dtype=torch.float64) / (
        predictions[0].numel()
    )


def psnr(
    predictions: torch.Tensor, references: torch.Tensor, *, peak: Peak = 255.0, value_range: float = 1.0
) -> torch.Tensor:
    """Per-image PSNR (B,) in dB: 10 log10(peak^2 / MSE)."""
    return _psnr_from_mse(
        mse(predictions, references, value_range=value_range), _peak_squared(peak, references, value_range)
    )


def fmse(
    predictions: torch.Tensor, references: torch.Tensor, masks: torch.Tensor, *, value_range: float = 1.0
) -> torch.Tensor:
    """Per-image foreground MSE (B,): sum(M d^2) / (C sum M); NaN where the mask is empty.

    ``masks`` (B, 1, H, W) or (B, H, W) in [0, 1] is used as given (binary or soft): apply the protocol
    (`apply_protocol` / `prepare_mask`) first to get the thresholded mask of the default protocol.
    """
    masks = _as_batched_mask(masks)
    _check(predictions, references, masks)
    weights = masks.float()
    weighted = (squared_error(predictions, references, value_range) * weights).flatten(1).sum(1, dtype=torch.float64)
    area = weights.flatten(1).sum(1, dtype=torch.float64)
    channels = predictions.shape[1]
    return torch.where(area > 0, weighted / (channels * area).clamp_min(1e-12), torch.full_like(area, math.nan))


def fpsnr(
    predictions: torch.Tensor,
    references: torch.Tensor,
    masks: torch.Tensor,
    *,
    peak: Peak = 255.0,
    value_range: float = 1.0,
) -> torch.Tensor:
    """Per-image foreground PSNR (B,) in dB: 10 log10(peak^2 / fMSE); NaN where the mask is empty."""
    return _psnr_from_mse(
        fmse(predictions, references, masks, value_range=value_range), _peak_squared(peak, references, value_range)
    )


def harmonization_metrics(
    predictions: torch.Tensor,
    references: torch.Tensor,
    masks: torch.Tensor,
    *,
    peak: Peak = 255.0,
    value_range: float = 1.0,
) -> dict[str, torch.Tensor]:
    """All four metrics per image in one pass: ``{"mse", "psnr", "fmse", "fpsnr"}``, each (B,) float64.

    Inputs are used at the size given with the mask as given; `score_harmonization` applies a protocol first.
    """
    masks = _as_batched_mask(masks)
    _check(predictions, references, masks)
    sq = squared_error(predictions, references, value_range)
    weights = masks.float()
    channels = predictions.shape[1]
    image_mse = sq.flatten(1).sum(1, dtype=torch.float64) / predictions[0].numel()
    area = weights.flatten(1).sum(1, dtype=torch.float64)
    weighted = (sq * weights).flatten(1).sum(1, dtype=torch.float64)
    image_fmse = torch.where(area > 0, weighted / (channels * area).clamp_min(1e-12), torch.full_like(area, math.nan))
    peak_squared = _peak_squared(peak, references, value_range)
    return {
        "mse": image_mse,
        "psnr": _psnr_from_mse(image_mse, peak_squared),
        "fmse": image_fmse,
        "fpsnr": _psnr_from_mse(image_fmse, peak_squared),
    }


def score_harmonization(
    predictions: torch.Tensor,
    references: torch.Tensor,
    masks: torch.Tensor,
    *,
    protocol: str | EvalProtocol = "default",
    value_range: float = 1.0,
) -> dict[str, torch.Tensor]:
    """`harmonization_metrics` under an evaluation protocol (resizing, mask threshold, peak; see `protocol`).

    Args:
        predictions: (B, 3, H, W) harmonized images in [0, value_range] (clamped, not rounded).
        references: (B, 3, H, W) real images, same range.
        masks: (B, 1, H, W) or (B, H, W) foreground masks in [0, 1].
        protocol: ``"default"``, ``"is2am"`` or an `EvalProtocol`.
    Returns:
        ``{"mse", "psnr", "fmse", "fpsnr"}`` per image, (B,) float64 (fMSE / fPSNR NaN for an empty foreground).
    """
    protocol = get_protocol(protocol)
    scale = 1.0 / value_range
    predictions, masks, references = apply_protocol(
        predictions.float() * scale, _as_batched_mask(masks).float(), references.float() * scale, protocol
    )
    return harmonization_metrics(predictions, references, masks, peak=protocol.peak)


def aggregate(per_image: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean over images of per-image metrics; fMSE / fPSNR over the images with a foreground.

    An image whose MSE is not finite had a NaN prediction: it is counted in ``non_finite`` and makes every
    mean NaN (a model that fails on some images must not score as if they did not exist). An image with a finite
    MSE but a NaN fMSE has an empty foreground: it is counted in ``empty_foreground`` and left out of the fMSE /
    fPSNR means only.

    Returns ``{"mse", "psnr", "fmse", "fpsnr", "images", "empty_foreground", "non_finite"}``.
    """
    values = {k: torch.as_tensor(per_image[k], dtype=torch.float64) for k in METRIC_NAMES}
    failed = ~torch.isfinite(values["mse"])
    empty = torch.isnan(values["fmse"]) & ~failed
    out: dict[str, float] = {}
    for key, v in values.items():
        kept = v[~empty] if key in ("fmse", "fpsnr") else v
        out[key] = float(kept.mean()) if kept.numel() else math.nan
    out["images"] = int(values["mse"].numel())
    out["empty_foreground"] = int(empty.sum())
    out["non_finite"] = int(failed.sum())
    return out
