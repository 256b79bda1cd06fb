"""examples/release_model.py: a trained folder -> a small hub-ready release that loads as float32 everywhere; a
release re-released in place comes out byte for byte the same (so model_cards/* are what the writer writes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open

MODEL_CARDS = Path(__file__).resolve().parents[2] / "model_cards"


def test_release_folder_is_small_loads_in_float32_and_has_a_card(tmp_path, iharmony4_root, tiny_config, run_in_process):
    trained, release = tmp_path / "trained", tmp_path / "release"
    run_in_process(
        "run_finetune.py",
        ["--data_dir", str(iharmony4_root), "--model_config", tiny_config, "--resolution", "32",
         "--train_batch_size", "2", "--max_train_steps", "2", "--lr_warmup_steps", "1", "--report_to", "none",
         "--dataloader_num_workers", "0", "--validation_steps", "0", "--output_dir", str(trained)],
    )  # fmt: skip
    (tmp_path / "summary.md").write_text("A test model.")
    (tmp_path / "notes.md").write_text("## Limitations\n\nNone tested.")
    run_in_process(
        "release_model.py",
        ["--model", str(trained), "--output", str(release), "--name", "user/test-model",
         "--results", str(trained / "eval_results.json"), "--summary_file", str(tmp_path / "summary.md"),
         "--notes_file", str(tmp_path / "notes.md"), "--sample_grid", str(trained / "sample_grid.png")],
    )  # fmt: skip

    with safe_open(release / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    from transformers import AutoModelForImageToImage, pipeline

    from lemart_hf import SwinIHForHarmonization

    model = SwinIHForHarmonization.from_pretrained(release)
    original = AutoModelForImageToImage.from_pretrained(trained)
    assert model.dtype == torch.float32
    for key, value in original.state_dict().items():  # float16 storage: only rounding changed
        torch.testing.assert_close(model.state_dict()[key], value, rtol=1e-3, atol=1e-4)

    card = (release / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    (result,) = meta["model-index"][0]["results"]  # one subset: its row, not again as "All"
    assert [m["type"] for m in result["metrics"]] == ["psnr", "mse", "fpsnr", "fmse"]
    assert meta["license"] == "cc-by-nc-4.0" and "research use" in card
    assert "A test model." in card and "## Limitations" in card and "## Command" in card
    assert "| `resolution` | `32` |" in card  # the training recipe of the trained folder's card
    assert (release / "sample_grid.png").is_file() and (release / "preprocessor_config.json").is_file()
    assert json.loads((release / "config.json").read_text())["dtype"] == "float32"

    from lemart_hf import ImageHarmonizationPipeline
    from lemart_hf.hub import check_hub_folder

    assert check_hub_folder(release) == []
    pipe = pipeline("image-harmonization", model=str(release), pipeline_class=ImageHarmonizationPipeline, device="cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    mask = np.zeros((40, 56), np.uint8)
    mask[8:30, 10:40] = 255
    assert pipe(image, Image.fromarray(mask)).size == (56, 40)


@pytest.mark.parametrize(
    "name",
    [
        "swinih-tiny-lemart-houtdoor",
        "swinih-tiny-lemart-pretrained",
        "swinih-lemart-general",
        "swinih-lemart-general-pretrained",
    ],
)
def test_rereleasing_a_model_card_in_place_reproduces_it(name, tmp_path, run_in_process):
    """The committed release is exactly what the writer makes of it: weights, config, code and card (summary,
    results, notes, metrics, base_model read back from it), byte for byte. Fails after a change to the card format
    or the copied code until model_cards/ are re-released with this command. (config.json's `transformers_version`
    names the transformers that wrote it, not the model: it is compared without it.)"""
    release = tmp_path / name
    shutil.copytree(MODEL_CARDS / name, release)
    run_in_process("release_model.py", ["--model", str(release), "--output", str(release), "--name", name])
    written = sorted(p.name for p in release.iterdir())
    assert written == sorted(p.name for p in (MODEL_CARDS / name).iterdir())
    for file in written:
        if file == "config.json":
            rewritten, committed = (json.loads((folder / file).read_text()) for folder in (release, MODEL_CARDS / name))
            rewritten.pop("transformers_version"), committed.pop("transformers_version")
            assert rewritten == committed, file
        else:
            assert (release / file).read_bytes() == (MODEL_CARDS / name / file).read_bytes(), file
