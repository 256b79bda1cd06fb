"""High-resolution transfer (lemart_hf.highres): a correction made at the working size, carried to full size."""

import math

import pytest
import torch
import torch.nn.functional as F

from lemart_hf.highres import (
    _box,
    _resize,
    apply_color_transform,
    default_radius,
    fit_color_transform,
    harmonized_regions,
    to_working_size,
    transfer_harmonization,
)


def photo_like(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) in [0.05, 0.95]: smooth colour regions plus fine texture that a downsampled copy loses."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, 6, 6, generator=generator), size=(height, width), mode="bicubic")[0]
    fine = torch.rand(3, height, width, generator=generator)
    return (0.05 + 0.9 * (0.6 * coarse + 0.4 * fine)).clamp(0, 1)


def blob_mask(height: int, width: int) -> torch.Tensor:
    """(1, H, W): an ellipse with a soft (antialiased) edge."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    distance = (yy / 0.6) ** 2 + (xx / 0.45) ** 2
    return ((1 - distance) * 8).clamp(0, 1)[None]


def recolour(image: torch.Tensor) -> torch.Tensor:
    """A global colour change (cross-channel matrix, offset, gamma): what harmonization has to undo."""
    matrix = torch.tensor([[0.75, 0.15, 0.0], [0.05, 0.85, 0.1], [0.0, 0.2, 0.7]])
    return (torch.einsum("ck,khw->chw", matrix, image) + torch.tensor([0.08, -0.03, 0.12])[:, None, None]).clamp(
        0, 1
    ) ** 1.2


def fpsnr(prediction, real, mask):
    hard = (mask > 0.5).float()
    mse = ((prediction - real) * 255).pow(2).mul(hard).sum() / (3 * hard.sum())
    return 10 * math.log10(255**2 / mse.item())


@pytest.fixture
def scene():
    """Full-size real image, composite (recoloured inside the mask), mask, and the oracle low-resolution output."""
    real = photo_like(256, 320)
    mask = blob_mask(256, 320)
    composite = mask * recolour(real) + (1 - mask) * real
    low = (64, 80)
    composite_low, mask_low, real_low = _resize(composite, low), _resize(mask, low), _resize(real, low)
    oracle = mask_low * real_low + (1 - mask_low) * composite_low  # a perfect model at the working size
    return real, composite, mask, composite_low, mask_low, oracle


def test_local_affine_transfer_beats_resizing_the_prediction(scene):
    real, composite, mask, composite_low, mask_low, oracle = scene
    scores = {
        method: fpsnr(
            transfer_harmonization(composite, mask, oracle, composite_low, mask_low, method=method), real, mask
        )
        for method in ("affine", "offset", "resize")
    }
    unchanged = fpsnr(composite, real, mask)
    assert scores["affine"] > 35 > unchanged + 10, scores
    assert scores["affine"] > scores["resize"] + 8, scores
    assert scores["affine"] > scores["offset"] > unchanged, scores


@pytest.mark.parametrize("method", ["affine", "offset", "resize"])
def test_background_is_bit_exact_and_empty_mask_is_identity(scene, method):
    _, composite, mask, composite_low, mask_low, oracle = scene
    output = transfer_harmonization(composite, mask, oracle, composite_low, mask_low, method=method)
    background = mask[0] == 0
    assert torch.equal(output[:, background], composite[:, background])
    assert 0 <= output.min() and output.max() <= 1
    empty = torch.zeros_like(mask)
    assert torch.equal(transfer_harmonization(composite, empty, oracle, method=method), composite)


def test_same_size_uses_the_prediction_as_is(scene):
    _, composite, mask, *_ = scene
    prediction = (mask * (composite * 0.8 + 0.1) + (1 - mask) * composite).clamp(0, 1)
    assert torch.equal(
        transfer_harmonization(composite, mask, prediction), torch.where(mask == 0, composite, prediction)
    )


def test_soft_edges_are_fully_corrected(scene):
    """The blended prediction is only partly corrected on a soft edge; the fit undoes the blend (`_fit_targets`)."""
    real, composite, mask, composite_low, mask_low, _ = scene
    corrected = real  # the transform to recover maps composite -> real inside the mask
    prediction_low = mask_low * _resize(corrected, (64, 80)) + (1 - mask_low) * composite_low
    output = transfer_harmonization(composite, mask, prediction_low, composite_low, mask_low)
    edge = (mask > 0.05) & (mask < 0.95)
    expected = mask * real + (1 - mask) * composite
    assert (output - expected).abs()[edge.expand(3, -1, -1)].mean() < 0.02


def test_identity_prediction_gives_identity_coefficients():
    image = photo_like(40, 50)
    mask = blob_mask(40, 50)
    coefficients = fit_color_transform(image, image, mask)
    identity = torch.cat([torch.eye(3).reshape(9, 1, 1).expand(9, 40, 50), torch.zeros(3, 40, 50)])
    torch.testing.assert_close(coefficients, identity, atol=1e-4, rtol=0)


def test_flat_images_stay_finite():
    flat = torch.full((3, 32, 32), 0.5)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1
    coefficients = fit_color_transform(flat, flat * 0.5, mask)
    assert torch.isfinite(coefficients).all()
    output = apply_color_transform(coefficients, torch.full((3, 100, 100), 0.5), _resize(mask, (100, 100)))
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("size", [(300, 257), (64, 80), (40, 33), (150, 50)])
def test_strips_match_interpolating_the_whole_coefficient_map(size):
    coefficients = torch.rand(12, 64, 80) * 0.2 + torch.cat([torch.eye(3).reshape(9, 1, 1), torch.zeros(3, 1, 1)])
    composite = photo_like(*size, seed=1)
    mask = torch.rand(1, *size)
    mask[mask < 0.3] = 0
    full = F.interpolate(
        coefficients[None], size=size, mode="bilinear", align_corners=False, antialias=size[0] < 64 or size[1] < 80
    )[0]
    transformed = torch.einsum("ckhw,khw->chw", full[:9].reshape(3, 3, *size), composite) + full[9:]
    expected = (composite + mask * (transformed - composite)).clamp(0, 1)
    for strip in (1 << 22, 12 * size[1] * 3):
        output = apply_color_transform(coefficients, composite, mask, max_strip_elements=strip)
        torch.testing.assert_close(output, expected, atol=2e-5, rtol=0)


def test_box_filter_matches_average_pooling():
    x = torch.rand(4, 23, 31)
    for radius in (0, 1, 3, 15):
        reference = F.avg_pool2d(F.pad(x, (radius,) * 4)[None], 2 * radius + 1, stride=1)[0]
        torch.testing.assert_close(_box(x, radius), reference, atol=1e-5, rtol=0)


def test_default_radius_scales_with_the_working_size():
    assert default_radius((256, 256)) == 32 and default_radius((128, 96)) == 12 and default_radius((4, 4)) == 1


def test_bad_arguments():
    image, mask = photo_like(20, 20), blob_mask(20, 20)
    with pytest.raises(ValueError, match="method"):
        transfer_harmonization(image, mask, image, method="bicubic")
    with pytest.raises(ValueError, match="same size"):
        transfer_harmonization(image, mask[:, :10], image)


# ----- 8-bit inputs: converted a strip of rows at a time --------------------------------------------------------
def as_uint8(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) float -> uint8, as the pipeline holds a photo: a (C, H, W) view of an (H, W, C) array."""
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().permute(2, 0, 1)


@pytest.mark.parametrize("size, low", [((300, 257), (64, 80)), ((37, 500), (64, 64)), ((64, 200), (64, 80))])
def test_working_size_copy_of_8bit_data_is_the_processors_resize(size, low):
    """`to_working_size` resizes strips of rows along the columns, then the rows; PyTorch's antialiased resize is
    separable in that order, so this is the image processor's resize of `v / 255` bit for bit (what keeps 8-bit and
    float inputs of the pipeline giving the same output)."""
    for image in (as_uint8(photo_like(*size)), as_uint8(blob_mask(*size))):
        expected = F.interpolate(
            (image.float() / 255)[None], size=low, mode="bilinear", align_corners=False, antialias=True
        )[0]
        assert torch.equal(to_working_size(image, low, max_strip_elements=image.shape[0] * size[1] * 7), expected)


@pytest.mark.parametrize("method", ["affine", "offset", "resize"])
def test_8bit_inputs_give_the_float_result_and_an_exact_background(scene, method):
    """A uint8 composite and mask give what their float versions `v / 255` give; into a uint8 `out` that result is
    rounded as the pipeline's PIL conversion rounds it (so an 8-bit PIL output is the same image either way; the
    issue asked for at most 1 level: it is 0), and the background is the input's bytes."""
    _, composite, mask, *_ = scene
    composite8, mask8 = as_uint8(composite), as_uint8(mask)
    composite, mask = composite8.float() / 255, mask8.float() / 255
    composite_low, mask_low = to_working_size(composite8, (64, 80)), to_working_size(mask8, (64, 80))
    prediction = (mask_low * recolour(composite_low) + (1 - mask_low) * composite_low).clamp(0, 1)
    expected = transfer_harmonization(composite, mask, prediction, composite_low, mask_low, method=method)
    strips = {"max_strip_elements": 12 * 320 * 7}  # many strips, some cut inside a run of rows
    output = transfer_harmonization(composite8, mask8, prediction, composite_low, mask_low, method=method, **strips)
    assert torch.equal(output, expected)
    out = torch.empty(256, 320, 3, dtype=torch.uint8)
    transfer_harmonization(
        composite8, mask8, prediction, composite_low, mask_low, method=method, out=out.permute(2, 0, 1), **strips
    )
    rounded = (expected.clamp(0, 1) * 255).round().to(torch.uint8)
    assert int((out.permute(2, 0, 1).int() - rounded.int()).abs().max()) <= 1
    assert torch.equal(out.permute(2, 0, 1), rounded)  # measured: 0 levels
    background = mask8[0] == 0
    assert background.any() and torch.equal(out.permute(2, 0, 1)[:, background], composite8[:, background])
    # With the default working-size copies (no composite_low / mask_low), uint8 and float agree too.
    assert torch.equal(
        transfer_harmonization(composite8, mask8, prediction, method=method),
        transfer_harmonization(composite, mask, prediction, method=method),
    )


def test_regions_cover_the_foreground_and_leave_the_rest_to_the_composite(scene):
    _, composite, mask, composite_low, mask_low, oracle = scene
    expected = transfer_harmonization(composite, mask, oracle, composite_low, mask_low)
    covered = torch.zeros(mask.shape[-2:], dtype=torch.int32)
    rebuilt = composite.clone()
    for top, left, values in harmonized_regions(composite, mask, oracle, composite_low, mask_low):
        rows, columns = slice(top, top + values.shape[-2]), slice(left, left + values.shape[-1])
        covered[rows, columns] += 1
        rebuilt[:, rows, columns] = values
    assert covered.max() == 1 and bool((covered[mask[0] > 0] == 1).all())  # no overlap, every foreground pixel
    assert covered.sum() < mask[0].numel()  # cut to the foreground's columns
    assert torch.equal(rebuilt, expected)
    assert list(harmonized_regions(composite, torch.zeros_like(mask), oracle)) == []
