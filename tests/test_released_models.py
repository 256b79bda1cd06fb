"""The checkpoints released in model_cards/ load with the model class and the pipeline, and the fine-tuned one
harmonizes: on HOutdoor test composites (when ../shared is there) it raises fPSNR over the composite. That they are
complete hub repositories with cards the Hub reads, and run without lemart_hf: tests/test_hub.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf import ImageHarmonizationPipeline, SwinIHForHarmonization

MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"
FINETUNED = MODEL_CARDS / "swinih-tiny-lemart-houtdoor"
PRETRAINED = MODEL_CARDS / "swinih-tiny-lemart-pretrained"


@pytest.mark.parametrize("folder", [FINETUNED, PRETRAINED], ids=lambda f: f.name)
def test_release_loads_with_the_model_class_and_the_pipeline(folder):
    from transformers import pipeline

    assert sum(p.stat().st_size for p in folder.iterdir()) < 8e6, "keep the release small"
    model = SwinIHForHarmonization.from_pretrained(folder)
    assert model.dtype == torch.float32 and not model.training
    pipe = pipeline("image-harmonization", model=str(folder), pipeline_class=ImageHarmonizationPipeline, device="cpu")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    mask = np.zeros((90, 120), np.uint8)
    mask[20:70, 30:90] = 255
    out = np.asarray(pipe(image, Image.fromarray(mask)))
    assert out.shape == (90, 120, 3)
    assert np.array_equal(out[mask == 0], np.asarray(image)[mask == 0])


def test_finetuned_release_improves_fpsnr_on_houtdoor_test(shared_data):
    """32 test composites at the protocol size (256x256), the model run as the pipeline runs it."""
    from transformers import AutoImageProcessor

    from lemart_hf.baselines import get_baseline
    from lemart_hf.data import load_iharmony4
    from lemart_hf.evaluation import evaluate_harmonization, model_predictor

    torch.set_num_threads(1)
    rows = load_iharmony4(shared_data, ["HOutdoor"], "test", max_samples=32)
    model = SwinIHForHarmonization.from_pretrained(FINETUNED).eval()
    working = AutoImageProcessor.from_pretrained(FINETUNED).size["height"]
    harmonized = evaluate_harmonization(model_predictor(model, working), rows, batch_size=16, progress=False)
    composite = evaluate_harmonization(get_baseline("composite"), rows, batch_size=16, progress=False)
    gain = harmonized.all["fpsnr"] - composite.all["fpsnr"]
    assert gain > 1.0, f"fPSNR {harmonized.all['fpsnr']:.2f} vs composite {composite.all['fpsnr']:.2f}"
    assert harmonized.all["mse"] < composite.all["mse"]
