"""The model-free baselines: composite (identity) and Reinhard colour transfer in Lab."""

import re
from pathlib import Path

import pytest
import torch

from lemart_hf.baselines import (
    BASELINES,
    color_transfer_baseline,
    composite_baseline,
    get_baseline,
    reinhard_color_transfer,
)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _scene(batch=2, size=32, seed=0):
    """A grey-blue textured background with a warmer, brighter foreground square in the middle, all well
    inside the RGB gamut so that the transfer needs no clipping."""
    g = torch.Generator().manual_seed(seed)

    def texture(low, high):
        return torch.stack(
            [torch.empty(batch, size, size).uniform_(lo, hi, generator=g) for lo, hi in zip(low, high)], 1
        )

    background = texture((0.30, 0.35, 0.40), (0.45, 0.50, 0.55))
    foreground = texture((0.55, 0.45, 0.30), (0.65, 0.55, 0.40))
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return mask * foreground + (1 - mask) * background, mask


def _lab_stats(image, weights):
    import kornia

    lab = kornia.color.rgb_to_lab(image)
    area = weights.sum((2, 3))
    mean = (lab * weights).sum((2, 3)) / area
    std = (((lab - mean[..., None, None]) ** 2 * weights).sum((2, 3)) / area).sqrt()
    return mean, std


def test_composite_baseline_is_the_input():
    composite, mask = _scene()
    pixel_values = torch.cat([composite, mask], 1)
    assert torch.equal(composite_baseline(pixel_values), composite)
    assert get_baseline("composite") is composite_baseline and set(BASELINES) == {"composite", "color_transfer"}
    with pytest.raises(ValueError):
        get_baseline("nope")


@pytest.mark.parametrize("lab", ["float", "uint8"])
def test_color_transfer_moves_foreground_statistics_to_the_background(lab):
    composite, mask = _scene()
    out = reinhard_color_transfer(composite, mask, lab=lab)
    assert out.shape == composite.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out * (1 - mask), composite * (1 - mask))  # background untouched
    fg_mean, fg_std = _lab_stats(out, mask)
    bg_mean, bg_std = _lab_stats(composite, 1 - mask)
    before, _ = _lab_stats(composite, mask)
    tol = 0.05 if lab == "float" else 1.0  # 8-bit Lab rounds to ~0.4 L / 1 a,b units
    assert (fg_mean - bg_mean).abs().max() < tol * 2 < (before - bg_mean).abs().max()
    assert (fg_std - bg_std).abs().max() < tol * 2
    if lab == "uint8":  # OpenCV-style output is 8-bit RGB (inside the mask; the background is the input's)
        levels = (out * 255)[mask.expand_as(out) > 0]
        assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_color_transfer_leaves_degenerate_masks_alone():
    composite, _ = _scene(batch=2)
    mask = torch.zeros(2, 1, 32, 32)
    mask[1] = 1  # sample 0: empty foreground, sample 1: empty background
    out = color_transfer_baseline(torch.cat([composite, mask], 1))
    assert torch.equal(out, composite)
    assert torch.isfinite(out).all()


def _readme_row(method_prefix):
    text = (SHARED / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {method_prefix}"))
    return [float(x) for x in re.findall(r"\|\s*([0-9.]+)\s*(?=\|)", row)]


@pytest.mark.skipif(not (SHARED / "HOutdoor").is_dir(), reason="../shared/data/HOutdoor not present")
def test_color_transfer_reproduces_the_houtdoor_reference_row():
    from lemart_hf.data import load_iharmony4
    from lemart_hf.evaluation import evaluate_harmonization

    reference = _readme_row("Reinhard")  # MSE, PSNR, fMSE, fPSNR
    dataset = load_iharmony4(SHARED, subsets="HOutdoor", split="test")
    results = evaluate_harmonization(color_transfer_baseline, dataset, batch_size=32, num_workers=2, progress=False)
    row = results["HOutdoor"]
    assert row["images"] == 256
    assert row["mse"] == pytest.approx(reference[0], rel=5e-3)
    assert row["psnr"] == pytest.approx(reference[1], abs=0.02)
    assert row["fmse"] == pytest.approx(reference[2], rel=5e-3)
    assert row["fpsnr"] == pytest.approx(reference[3], abs=0.02)
