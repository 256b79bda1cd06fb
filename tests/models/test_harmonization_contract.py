"""The contract every registered architecture keeps (DESIGN.md §3), run over all of them: any input size, output in
[0, 1], background kept bit-exactly, the losses, gradients reaching every parameter, safetensors save / load through
the Auto classes and with remote code where lemart_hf is absent, and the "image-harmonization" pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageToImage, pipeline

from lemart_hf import ARCHITECTURES, SwinIHImageProcessor

# Per architecture, a config small enough for a forward and backward in well under a second on one core.
SMALL = {
    "swinih": {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4},
    "vit": {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32},
    "resnet_generator": {"hidden_size": 8, "num_blocks": 2},
    "hrnet": {"hidden_sizes": [8, 16, 32], "num_blocks": 1},
    "harmony_transformer": {"base_channels": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
}
NAMES = sorted(ARCHITECTURES)


def small_model(name: str, **overrides):
    arch = ARCHITECTURES[name]
    return arch.model_class(arch.config_class(**{**SMALL[name], **overrides})).eval()


def random_inputs(batch: int, height: int, width: int, soft: bool = False) -> torch.Tensor:
    pixel_values = torch.rand(batch, 4, height, width)
    mask = torch.zeros(batch, 1, height, width)
    mask[..., height // 4 : height // 4 + height // 2, width // 3 : width // 3 + width // 2] = 1
    if soft:
        mask = mask * torch.rand_like(mask)
    pixel_values[:, 3:] = mask
    return pixel_values


def randomize_head(model) -> None:
    """New architectures start as the exact identity (zero output layer); give the head weights so gradients and
    outputs depend on every layer."""
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.normal_(0, 0.02)


def test_every_architecture_is_covered():
    assert set(SMALL) == set(ARCHITECTURES)
    for arch in ARCHITECTURES.values():
        assert arch.config_class.default_preset in arch.config_class.presets
        assert any("tiny" in preset for preset in arch.presets), f"{arch.name} has no CPU-sized preset"


@pytest.mark.parametrize("name", NAMES)
def test_presets_build_and_config_round_trips(name, tmp_path):
    arch = ARCHITECTURES[name]
    tiny = next(p for p in arch.presets if "tiny" in p)
    config = arch.config_class.from_preset(tiny, loss_type="fn_mse")
    model = arch.model_class(config)
    assert 1e4 < sum(p.numel() for p in model.parameters()) < 5e6  # trains on a CPU
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is arch.config_class
    assert {**loaded.to_dict(), "_name_or_path": ""} == {**config.to_dict(), "_name_or_path": ""}
    with pytest.raises(ValueError, match="unknown .* preset 'nope'"):
        arch.config_class.from_preset("nope")
    with pytest.raises(ValueError, match="loss_type"):
        arch.config_class(loss_type="l1")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(33, 47), (8, 13), (64, 64)])
def test_any_size_in_range_and_background_kept(name, size):
    model = small_model(name)
    randomize_head(model)
    for soft in (False, True):
        pixel_values = random_inputs(2, *size, soft=soft)
        with torch.no_grad():
            harmonized = model(pixel_values=pixel_values).harmonized
        assert harmonized.shape == (2, 3, *size)
        assert harmonized.min() >= 0 and harmonized.max() <= 1
        background = (pixel_values[:, 3:] == 0).expand(-1, 3, -1, -1)
        assert torch.equal(harmonized[background], pixel_values[:, :3][background])
        assert not torch.equal(harmonized, pixel_values[:, :3])  # the foreground is changed


@pytest.mark.parametrize("name", [n for n in NAMES if n != "swinih"])
def test_new_architectures_start_as_the_identity(name):
    pixel_values = random_inputs(1, 24, 40)
    with torch.no_grad():
        assert torch.equal(small_model(name)(pixel_values=pixel_values).harmonized, pixel_values[:, :3])


@pytest.mark.parametrize("name", NAMES)
def test_losses_and_gradients_reach_every_parameter(name):
    model = small_model(name).train()
    randomize_head(model)
    pixel_values, labels = random_inputs(2, 32, 32), torch.rand(2, 3, 32, 32)
    mse = model(pixel_values=pixel_values, labels=labels, loss_type="mse").loss
    fn_mse = model(pixel_values=pixel_values, labels=labels, loss_type="fn_mse").loss
    assert mse.ndim == 0 and fn_mse.ndim == 0 and fn_mse > mse > 0  # the foreground is half the image or less
    fn_mse.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no or non-finite gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"zero gradient for {zero}"
    with pytest.raises(ValueError, match="labels must have shape"):
        model(pixel_values=pixel_values, labels=labels[..., :16])


@pytest.mark.parametrize("name", NAMES)
def test_no_token_embeddings(name):
    """Accelerate's FSDP2 preparation asks every model for its input and output embeddings; transformers' default
    raises for image models it cannot inspect."""
    model = small_model(name)
    assert model.get_input_embeddings() is None and model.get_output_embeddings() is None


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_shape_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 4, height, width\)"):
        small_model(name)(pixel_values=torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_gives_the_same_gradients(name):
    pixel_values, labels = random_inputs(2, 16, 16), torch.rand(2, 3, 16, 16)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = small_model(name, drop_path_rate=0.0) if name == "swinih" else small_model(name)
        randomize_head(model)
        model.train()
        if checkpointing:
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Every architecture saved with its processor, with an input and the expected output next to it."""
    folders = {}
    for name in NAMES:
        folder = tmp_path_factory.mktemp(name)
        model = small_model(name)
        randomize_head(model)
        model.save_pretrained(folder)
        SwinIHImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
        pixel_values = random_inputs(1, 30, 34)
        torch.save(pixel_values, folder / "inputs.pt")
        with torch.no_grad():
            torch.save(model(pixel_values=pixel_values).harmonized, folder / "expected.pt")
        folders[name] = folder
    return folders


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip_through_the_auto_class(name, saved_models):
    folder = saved_models[name]
    assert (folder / "model.safetensors").is_file()
    loaded = AutoModelForImageToImage.from_pretrained(folder).eval()
    assert type(loaded) is ARCHITECTURES[name].model_class
    with torch.no_grad():
        assert torch.equal(
            loaded(pixel_values=torch.load(folder / "inputs.pt")).harmonized, torch.load(folder / "expected.pt")
        )


def test_saved_folders_load_with_remote_code_without_lemart_hf(saved_models):
    for folder in saved_models.values():
        config = json.loads((folder / "config.json").read_text())
        module = config["auto_map"]["AutoModelForImageToImage"].split(".")[0]
        assert (folder / f"{module}.py").is_file() and not (folder / f"{module}.py").is_symlink()
    folders = [str(f) for f in saved_models.values()]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["lemart_hf"] = None  # lemart_hf is not importable in this process
        import torch
        from transformers import AutoModelForImageToImage
        for folder in {folders!r}:
            model = AutoModelForImageToImage.from_pretrained(folder, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                out = model(pixel_values=torch.load(folder + "/inputs.pt")).harmonized
            assert torch.equal(out, torch.load(folder + "/expected.pt")), folder
            print("remote-ok", type(model).__name__)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("remote-ok") == len(folders)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_harmonizes_any_size_with_every_architecture(name, saved_models):
    pipe = pipeline("image-harmonization", model=str(saved_models[name]), device="cpu")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (45, 71, 3), dtype=np.uint8))
    mask = np.zeros((45, 71), np.uint8)
    mask[10:30, 20:50] = 255
    result = pipe(image, Image.fromarray(mask))
    assert result.size == image.size
    out, original = np.asarray(result), np.asarray(image)
    assert np.array_equal(out[mask == 0], original[mask == 0])
    assert not np.array_equal(out[mask > 0], original[mask > 0])
