"""Auto-class registration, safetensors round trips and loading with remote code where lemart_hf is absent."""

import json
import subprocess
import sys
import textwrap

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageToImage

from lemart_hf import SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor, SwinIHModel

SMALL = dict(embed_dim=16, depths=[1, 1, 2], num_heads=[2, 2, 4], window_size=4)


def saved_model(tmp_path):
    model = SwinIHForHarmonization(SwinIHConfig(**SMALL)).eval()
    model.save_pretrained(tmp_path)
    SwinIHImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    return model


def inputs():
    pixel_values = torch.rand(1, 4, 30, 34)
    pixel_values[:, 3] = (pixel_values[:, 3] > 0.5).float()
    return pixel_values


def test_round_trip_through_concrete_and_auto_classes(tmp_path):
    model = saved_model(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    pixel_values = inputs()
    with torch.no_grad():
        expected = model(pixel_values).harmonized
        for loader in (SwinIHForHarmonization, AutoModelForImageToImage):
            loaded = loader.from_pretrained(tmp_path).eval()
            assert type(loaded) is SwinIHForHarmonization
            assert torch.equal(loaded(pixel_values).harmonized, expected)
    assert type(AutoConfig.from_pretrained(tmp_path)) is SwinIHConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is SwinIHModel
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is SwinIHImageProcessor


def test_saved_folder_is_self_contained_for_remote_code(tmp_path):
    model = saved_model(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageToImage"] == "modeling_swinih.SwinIHForHarmonization"
    assert config["auto_map"]["AutoModel"] == "modeling_swinih.SwinIHModel"
    for name in ("configuration_swinih.py", "modeling_swinih.py", "modeling_harmonization.py"):
        assert (tmp_path / name).is_file() and not (tmp_path / name).is_symlink()
    pixel_values = inputs()
    torch.save(pixel_values, tmp_path / "inputs.pt")
    with torch.no_grad():
        torch.save(model(pixel_values).harmonized, tmp_path / "expected.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["lemart_hf"] = None  # lemart_hf is not importable in this process
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageToImage
        folder = {str(tmp_path)!r}
        assert type(AutoModel.from_pretrained(folder, trust_remote_code=True)).__name__ == "SwinIHModel"
        model = AutoModelForImageToImage.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            out = model(torch.load(folder + "/inputs.pt")).harmonized
        assert torch.equal(out, torch.load(folder + "/expected.pt"))
        print("remote-ok", type(processor).__name__)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-ok SwinIHImageProcessor" in result.stdout
