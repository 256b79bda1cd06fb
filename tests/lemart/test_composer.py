import pytest
import torch

from lemart_hf.lemart import LEMaRTComposer, generator_for_step, generator_on_device

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _seeded(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_outputs_follow_the_model_input_contract(strategy, make_images):
    images = make_images(6, 64, 96)
    output = LEMaRTComposer(mask_strategy=strategy)(images, _seeded(0))
    assert set(output) == {"pixel_values", "labels", "mask"}
    assert output["pixel_values"].shape == (6, 4, 64, 96)
    assert output["labels"] is images
    assert output["mask"].shape == (6, 1, 64, 96)
    assert torch.equal(output["pixel_values"][:, 3:], output["mask"])
    composite = output["pixel_values"][:, :3]
    assert composite.min() >= 0 and composite.max() <= 1


@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_background_is_bit_identical_and_foreground_changed_for_every_sample(strategy, make_images):
    images = make_images(32)
    composer = LEMaRTComposer(mask_strategy=strategy)
    output = composer(images, _seeded(1))
    composite, mask = output["pixel_values"][:, :3], output["mask"].bool().expand_as(images)
    assert torch.equal(composite[~mask], images[~mask])
    difference = (composite - images).abs().mean(dim=1, keepdim=True)
    inside_change = (difference * output["mask"]).sum(dim=(1, 2, 3)) / output["mask"].sum(dim=(1, 2, 3))
    assert (inside_change >= 0.5 * composer.min_change).all(), inside_change


@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_realised_mask_ratio_follows_the_target(strategy, make_images):
    output = LEMaRTComposer(mask_strategy=strategy, mask_ratio=0.3)(make_images(16), _seeded(2))
    assert (output["mask"].mean(dim=(1, 2, 3)) - 0.3).abs().max() < 0.04


def test_flat_images_are_never_a_no_op():
    """Black, white and grey images defeat most perturbations; the guard still changes the foreground."""
    flat = torch.cat([torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32), torch.full((2, 3, 32, 32), 0.5)])
    composer = LEMaRTComposer(perturbations=["hue", "sharpness"], max_perturbations=2)
    output = composer(flat, _seeded(0))
    mask = output["mask"]
    change = ((output["pixel_values"][:, :3] - flat).abs() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3)))
    assert (change >= composer.min_change).all(), change


def test_empty_mask_leaves_the_image_untouched(make_images):
    images = make_images(3)
    output = LEMaRTComposer(mask_ratio=0.0)(images, _seeded(0))
    assert torch.equal(output["pixel_values"][:, :3], images)


def test_same_seed_same_composites_other_seed_other_composites(make_images):
    images = make_images(8)
    composer = LEMaRTComposer()
    first = composer(images, _seeded(11))
    again = composer(images, _seeded(11))
    other = composer(images, _seeded(12))
    for key in ("pixel_values", "mask"):
        assert torch.equal(first[key], again[key])
        assert not torch.equal(first[key], other[key])


def test_step_generators_make_training_resumable(make_images):
    images = make_images(4)
    composer = LEMaRTComposer()
    step_5 = composer(images, generator_for_step(seed=0, step=5))["pixel_values"]
    composer(images, generator_for_step(seed=0, step=4))  # whatever ran before does not matter
    assert torch.equal(composer(images, generator_for_step(seed=0, step=5))["pixel_values"], step_5)
    assert not torch.equal(composer(images, generator_for_step(seed=1, step=4))["pixel_values"], step_5)


def test_generator_on_device_keeps_a_matching_generator_and_derives_others_deterministically():
    cpu = _seeded(0)
    assert generator_on_device(cpu, "cpu") is cpu
    assert generator_on_device(None, "cpu") is None
    if torch.cuda.is_available():
        first, second = generator_on_device(_seeded(0), "cuda"), generator_on_device(_seeded(0), "cuda")
        assert first.device.type == "cuda" and first.initial_seed() == second.initial_seed()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_device_and_dtype_gives_the_same_shapes_and_dtypes(device, dtype, make_images):
    images = make_images(4).to(device=device, dtype=dtype)
    # A CPU generator also drives device images (it seeds a device generator).
    output = LEMaRTComposer()(images, _seeded(0))
    for key, channels in (("pixel_values", 4), ("labels", 3), ("mask", 1)):
        assert output[key].device == images.device and output[key].dtype == dtype
        assert output[key].shape == (4, channels, 64, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_composites_keep_the_background_and_are_seeded(make_images):
    images = make_images(16).cuda()
    composer = LEMaRTComposer(mask_strategy="block")
    output = composer(images, _seeded(0, "cuda"))
    again = composer(images, _seeded(0, "cuda"))
    mask = output["mask"].bool().expand_as(images)
    assert torch.equal(output["pixel_values"][:, :3][~mask], images[~mask])
    assert torch.equal(output["pixel_values"], again["pixel_values"])
    half = composer(images.half(), _seeded(0, "cuda"))
    assert half["pixel_values"].dtype == torch.float16


def test_global_rng_is_used_without_a_generator(make_images):
    torch.manual_seed(0)
    first = LEMaRTComposer()(make_images(2))["pixel_values"]
    torch.manual_seed(0)
    assert torch.equal(LEMaRTComposer()(make_images(2))["pixel_values"], first)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="mask strategy"):
        LEMaRTComposer(mask_strategy="stripes")
    with pytest.raises(ValueError, match="B, 3, H, W"):
        LEMaRTComposer()(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        LEMaRTComposer()(torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8))
