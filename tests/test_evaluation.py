"""The shared evaluation loop: per-subset table, All = mean over images, outputs, accelerator path."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf.baselines import composite_baseline
from lemart_hf.data import HarmonizationCollator
from lemart_hf.evaluation import evaluate_harmonization, model_predictor, summarize
from lemart_hf.metrics import score_harmonization


def _rows(n_per_subset=(3, 1), size=(40, 30), seed=0):
    """In-memory rows (PIL images) of two subsets with unequal sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for subset, n in zip(("HFlickr", "HCOCO"), n_per_subset):
        for i in range(n):
            real = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            composite = np.clip(real.astype(int) + rng.integers(-40, 40, (1, 1, 3)), 0, 255).astype(np.uint8)
            mask = np.zeros(size, np.uint8)
            mask[4 : 20 + i, 5:25] = 255
            rows.append(
                {
                    "composite": Image.fromarray(composite),
                    "mask": Image.fromarray(mask),
                    "real": Image.fromarray(real),
                    "subset": subset,
                    "name": f"{subset}_{i}.jpg",
                }
            )
    return rows


def test_summarize_all_is_the_mean_over_images_not_of_subsets():
    per_image = {
        "subset": ["A", "A", "A", "B"],
        "mse": [1.0, 2.0, 3.0, 10.0],
        "psnr": [40.0, 40.0, 40.0, 20.0],
        "fmse": [1.0, 1.0, float("nan"), 5.0],
        "fpsnr": [30.0, 30.0, float("nan"), 10.0],
    }
    table = summarize(per_image)
    assert list(table) == ["A", "B", "All"]
    assert table["All"]["mse"] == pytest.approx(4.0)  # (1+2+3+10)/4, not (2+10)/2
    assert table["All"]["images"] == 4 and table["All"]["empty_foreground"] == 1
    assert table["A"]["fmse"] == pytest.approx(1.0) and table["All"]["fmse"] == pytest.approx(7 / 3)


def test_loop_matches_the_metrics_and_resizes_odd_predictions(tmp_path):
    rows = _rows()
    seen = []

    def predict(pixel_values):  # an output object, at half the protocol size
        small = torch.nn.functional.interpolate(pixel_values[:, :3], size=(128, 128), mode="bilinear", antialias=True)
        return SimpleNamespace(harmonized=small)

    results = evaluate_harmonization(
        predict, rows, batch_size=3, progress=False, on_batch=lambda b, h: seen.append(h.shape), title="half"
    )
    assert seen == [(3, 3, 256, 256), (1, 3, 256, 256)]
    assert list(results.table) == ["HCOCO", "HFlickr", "All"]
    assert results["HFlickr"]["images"] == 3 and results.all["images"] == 4
    assert results.per_image["name"][0] == "HFlickr_0.jpg"

    batch = HarmonizationCollator()(rows)
    pred = torch.nn.functional.interpolate(batch["composite"], size=(128, 128), mode="bilinear", antialias=True)
    expected = score_harmonization(pred, batch["real"], batch["mask"])
    for key in ("mse", "psnr", "fmse", "fpsnr"):
        assert results.per_image[key] == pytest.approx(expected[key].tolist(), rel=1e-6)

    json_path, md_path = results.save(tmp_path)
    data = json.loads(open(json_path).read())
    assert data["title"] == "half" and len(data["per_image"]) == 4 and data["table"]["All"]["images"] == 4
    markdown = open(md_path).read()
    assert "| **All** | 4 |" in markdown and "Protocol `default`" in markdown and str(results) == markdown


def test_accelerator_path_equals_plain_loop_and_empty_foreground_is_reported(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    rows = _rows(n_per_subset=(2, 2))
    rows[1]["mask"] = Image.new("L", rows[1]["mask"].size, 0)  # empty foreground
    plain = evaluate_harmonization(composite_baseline, rows, batch_size=3, progress=False)
    accelerated = evaluate_harmonization(
        composite_baseline, rows, batch_size=3, progress=False, accelerator=accelerate.Accelerator(cpu=True)
    )
    assert plain.per_image["name"] == accelerated.per_image["name"]
    for key in ("mse", "psnr", "fmse", "fpsnr"):
        np.testing.assert_allclose(plain.per_image[key], accelerated.per_image[key], equal_nan=True)
    assert plain.all["empty_foreground"] == 1 and math.isnan(plain.per_image["fmse"][1])
    assert "left out of fMSE/fPSNR" in plain.to_markdown()
    json_path, _ = plain.save(tmp_path)
    assert json.loads(open(json_path).read())["per_image"][1]["fmse"] is None  # NaN -> null, valid JSON


def test_bad_predict_output_and_empty_dataset():
    with pytest.raises(TypeError, match="harmonized"):
        evaluate_harmonization(lambda x: object(), _rows((1, 0)), progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_harmonization(composite_baseline, [], progress=False)


def test_model_predictor_runs_the_prepared_model_and_reads_the_config_of_the_model():
    """With ``prepared`` (the model as Accelerate prepared it: DDP has no ``config``), that module runs; the
    model gives the config (``blend_background``), at the working size and at the input's own size."""
    from lemart_hf import SwinIHForHarmonization
    from lemart_hf.training import resolve_model_config

    model = SwinIHForHarmonization(resolve_model_config("swinih-tiny")).eval()
    calls = []

    class Prepared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, **inputs):
            calls.append(inputs["pixel_values"].shape[-1])
            return self.module(**inputs)

    pixel_values = torch.rand(2, 4, 48, 48)
    predict = model_predictor(model, 32, prepared=Prepared())
    with torch.no_grad():
        assert predict(pixel_values).shape == (2, 3, 48, 48)
        assert model_predictor(model, 48, prepared=Prepared())(pixel_values).shape == (2, 3, 48, 48)
    assert calls == [32, 48]
