"""The packaged default model: the release it copies, `pipeline("image-harmonization")` and the CLI without a model."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

import lemart_hf  # noqa: F401  (registers the task and its default)
from lemart_hf import default_model
from lemart_hf.cli import main as cli_main
from lemart_hf.default_model import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME, default_model_path, write_package_default

RELEASE = Path(__file__).resolve().parents[1] / "model_cards" / DEFAULT_MODEL_NAME


def _composite():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    mask = np.zeros((90, 120), np.uint8)
    mask[20:70, 30:90] = 255
    return image, Image.fromarray(mask)


def test_packaged_default_is_the_release_without_its_pipeline_declaration(tmp_path):
    for name in ("model.safetensors", "preprocessor_config.json"):
        assert (DEFAULT_MODEL_DIR / name).read_bytes() == (RELEASE / name).read_bytes(), name
    packaged = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    released = json.loads((RELEASE / "config.json").read_text())
    assert "image-harmonization" in released.pop("custom_pipelines")
    assert packaged == released
    # and the writer reproduces it exactly
    written = write_package_default(RELEASE, tmp_path / "copy")
    for name in default_model.DEFAULT_MODEL_FILES:
        assert (written / name).read_bytes() == (DEFAULT_MODEL_DIR / name).read_bytes(), name
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 5e6  # float16, a few MB


def test_pipeline_without_a_model_uses_the_packaged_default_offline():
    pipe = pipeline("image-harmonization", device="cpu")
    assert Path(pipe.model.name_or_path) == DEFAULT_MODEL_DIR
    image, mask = _composite()
    out = np.asarray(pipe(image, mask))
    outside = np.asarray(mask) == 0
    assert out.shape == (90, 120, 3) and np.array_equal(out[outside], np.asarray(image)[outside])


def test_cli_without_a_model_uses_the_packaged_default(tmp_path):
    image, mask = _composite()
    image.save(tmp_path / "c.png")
    mask.save(tmp_path / "m.png")
    assert cli_main([str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "out.png"), "-q"]) == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (120, 90)


def test_missing_packaged_model_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match="packaged default model is incomplete .*config.json"):
        default_model_path()
