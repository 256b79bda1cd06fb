"""MSE / PSNR / fMSE / fPSNR against hand-computed values, the protocol's resizing, and the evaluate module."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf.metrics import (
    HARMONIZATION_METRIC,
    MIN_MSE,
    EvalProtocol,
    aggregate,
    apply_protocol,
    fmse,
    fpsnr,
    harmonization_metrics,
    mse,
    prepare_mask,
    psnr,
    resize_image,
    score_harmonization,
)


def _pair():
    """2x2 RGB, reference black; the prediction differs by 10 at (R, 0, 0) and by 20 at (G, 0, 1) on 0..255."""
    ref = torch.zeros(1, 3, 2, 2)
    pred = torch.zeros(1, 3, 2, 2)
    pred[0, 0, 0, 0] = 10 / 255
    pred[0, 1, 0, 1] = 20 / 255
    return pred, ref


def test_mse_psnr_hand_computed():
    pred, ref = _pair()
    expected_mse = (10**2 + 20**2) / 12  # mean over H x W x 3 = 12 values
    assert mse(pred, ref).item() == pytest.approx(expected_mse, rel=1e-6)
    assert psnr(pred, ref).item() == pytest.approx(10 * math.log10(255**2 / expected_mse), abs=1e-6)


def test_fmse_binary_mask_hand_computed():
    pred, ref = _pair()
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1  # only the pixel with the R error of 10
    assert fmse(pred, ref, mask).item() == pytest.approx(100 / 3, rel=1e-6)
    assert fpsnr(pred, ref, mask).item() == pytest.approx(10 * math.log10(255**2 / (100 / 3)), abs=1e-6)
    mask[0, 0, 0, 1] = 1  # both erroneous pixels: (100 + 400) / (3 * 2)
    assert fmse(pred, ref, mask).item() == pytest.approx(500 / 6, rel=1e-6)


def test_fmse_soft_mask_is_a_weighted_mean():
    pred, ref = _pair()
    mask = torch.tensor([[[[0.5, 0.25], [0.0, 0.125]]]])
    expected = (0.5 * 100 + 0.25 * 400) / (3 * (0.5 + 0.25 + 0.125))
    assert fmse(pred, ref, mask).item() == pytest.approx(expected, rel=1e-6)


def test_odd_shapes_and_mask_without_channel_axis():
    torch.manual_seed(0)
    pred, ref = torch.rand(2, 3, 5, 7), torch.rand(2, 3, 5, 7)
    mask = torch.zeros(2, 5, 7)
    mask[0, 1:4, 2:5] = 1  # a 3x3 block
    mask[1, 0, 0] = 1  # a single pixel
    d2 = ((pred - ref) * 255).double().square()
    expected0 = (d2[0][:, 1:4, 2:5]).sum() / (3 * 9)
    expected1 = d2[1][:, 0, 0].sum() / 3
    got = fmse(pred, ref, mask)
    assert got[0].item() == pytest.approx(expected0.item(), rel=1e-5)
    assert got[1].item() == pytest.approx(expected1.item(), rel=1e-5)
    assert mse(pred, ref)[1].item() == pytest.approx(d2[1].mean().item(), rel=1e-5)


def test_empty_foreground_is_nan_and_excluded_with_a_count():
    pred, ref = _pair()
    pred, ref = pred.repeat(2, 1, 1, 1), ref.repeat(2, 1, 1, 1)
    mask = torch.zeros(2, 1, 2, 2)
    mask[1, 0, 0, 1] = 1
    per_image = harmonization_metrics(pred, ref, mask)
    assert math.isnan(per_image["fmse"][0]) and math.isnan(per_image["fpsnr"][0])
    assert per_image["fmse"][1].item() == pytest.approx(400 / 3, rel=1e-6)
    summary = aggregate(per_image)
    assert summary["empty_foreground"] == 1 and summary["images"] == 2
    assert summary["fmse"] == pytest.approx(400 / 3, rel=1e-6)  # the empty image is left out
    assert summary["mse"] == pytest.approx(500 / 12, rel=1e-6)  # MSE still over both


def test_prediction_clamped_not_rounded():
    ref = torch.zeros(1, 3, 1, 1)
    pred = torch.full((1, 3, 1, 1), 0.5004)  # 127.602 on 0..255: not rounded to 128
    assert mse(pred, ref).item() == pytest.approx((0.5004 * 255) ** 2, rel=1e-5)
    pred = torch.full((1, 3, 1, 1), 1.3)  # clamped to 255
    assert mse(pred, ref).item() == pytest.approx(255.0**2, rel=1e-6)


def test_peak_real_max_and_value_range():
    pred = torch.full((1, 3, 2, 2), 100.0)
    ref = torch.full((1, 3, 2, 2), 90.0)
    ref[0, 2, 1, 1] = 200.0
    expected_mse = (11 * 100 + 100**2) / 12
    assert mse(pred, ref, value_range=255.0).item() == pytest.approx(expected_mse, rel=1e-6)
    got = psnr(pred, ref, peak="real_max", value_range=255.0).item()
    assert got == pytest.approx(10 * math.log10(200**2 / expected_mse), abs=1e-6)
    with pytest.raises(ValueError):
        psnr(pred, ref, peak="max")


def test_perfect_prediction_psnr_is_finite():
    x = torch.rand(1, 3, 4, 4)
    value = psnr(x, x).item()
    assert value == pytest.approx(10 * math.log10(255**2 / MIN_MSE), abs=1e-6)


def test_shape_checks():
    with pytest.raises(ValueError):
        mse(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError):
        fmse(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize("src_size,dst", [((600, 500), (256, 256)), ((90, 130), (256, 256)), ((341, 256), (256, 256))])
def test_antialiased_bilinear_equals_pil_bilinear(src_size, dst):
    rng = np.random.default_rng(0)
    h, w = src_size
    channel = (rng.random((h, w)) * 255).astype(np.float32)
    pil = np.asarray(Image.fromarray(channel, mode="F").resize((dst[1], dst[0]), Image.BILINEAR))
    ours = resize_image(torch.from_numpy(channel)[None], dst, antialias=True)[0].numpy()
    assert np.abs(pil - ours).max() < 2e-3  # on 0..255


def test_resize_is_a_no_op_at_the_protocol_size():
    x = torch.rand(2, 3, 256, 256)
    assert resize_image(x, (256, 256)) is x


def test_prepare_mask_threshold_and_soft():
    mask = torch.tensor([[[[0.4, 0.6], [0.5, 1.0]]]])
    binary = prepare_mask(mask, EvalProtocol(size=(2, 2)))
    assert binary.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    soft = prepare_mask(mask, EvalProtocol(size=(2, 2), binary_mask=False))
    assert torch.equal(soft, mask)


def test_score_harmonization_applies_the_protocol():
    torch.manual_seed(1)
    pred, ref = torch.rand(2, 3, 300, 280), torch.rand(2, 3, 300, 280)
    mask = torch.rand(2, 1, 300, 280)
    got = score_harmonization(pred, ref, mask, protocol="default")
    p, m, r = apply_protocol(pred, mask, ref, "default")
    assert p.shape == (2, 3, 256, 256) and set(m.unique().tolist()) <= {0.0, 1.0}
    expected = harmonization_metrics(p, r, m)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    is2am = score_harmonization(pred, ref, mask, protocol="is2am")
    p, m, r = apply_protocol(pred, mask, ref, "is2am")
    expected = harmonization_metrics(p, r, m, peak="real_max")
    torch.testing.assert_close(is2am["fmse"], expected["fmse"])
    assert not torch.allclose(is2am["fmse"], got["fmse"])
    with pytest.raises(ValueError):
        score_harmonization(pred, ref, mask, protocol="nope")


def test_evaluate_module_offline(tmp_path):
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(HARMONIZATION_METRIC, experiment_id="test_metrics")
    torch.manual_seed(2)
    pred, ref = torch.rand(3, 3, 256, 256), torch.rand(3, 3, 256, 256)
    mask = (torch.rand(3, 1, 256, 256) > 0.7).float()
    mask[2] = 0  # one empty foreground
    metric.add_batch(predictions=pred[:2], references=ref[:2], masks=mask[:2])
    metric.add(prediction=pred[2], reference=ref[2], mask=mask[2, 0])
    result = metric.compute(per_image=True)
    expected = aggregate(score_harmonization(pred, ref, mask))
    for key in ("mse", "psnr", "fmse", "fpsnr"):
        assert result[key] == pytest.approx(expected[key], rel=1e-9)
    assert result["images"] == 3 and result["empty_foreground"] == 1 and result["protocol"] == "default"
    assert len(result["per_image"]["mse"]) == 3

    # PIL images (0..255) and images of different sizes, under the is2am protocol
    small = Image.fromarray((np.asarray(ref[0].permute(1, 2, 0)) * 255).astype(np.uint8))
    result = metric.compute(
        predictions=[small, np.ones((3, 100, 120), np.float32)],
        references=[small, np.zeros((3, 100, 120), np.float32)],
        masks=[Image.new("L", small.size, 255), np.ones((100, 120), np.float32)],
        protocol="is2am",
        per_image=True,
    )
    assert result["per_image"]["mse"] == pytest.approx([0.0, 255.0**2])
