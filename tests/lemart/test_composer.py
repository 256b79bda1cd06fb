import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lemart_hf.lemart import LEMaRTComposer, generator_for_step, generator_on_device
from lemart_hf.lemart import composer as composer_module

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _seeded(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_outputs_follow_the_model_input_contract(strategy, dense, make_images):
    images = make_images(6, 64, 96)
    output = LEMaRTComposer(mask_strategy=strategy, dense=dense)(images, _seeded(0))
    assert set(output) == {"pixel_values", "labels", "mask"}
    assert output["pixel_values"].shape == (6, 4, 64, 96)
    assert output["labels"] is images
    assert output["mask"].shape == (6, 1, 64, 96)
    assert torch.equal(output["pixel_values"][:, 3:], output["mask"])
    composite = output["pixel_values"][:, :3]
    assert composite.min() >= 0 and composite.max() <= 1


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_background_is_bit_identical_and_foreground_changed_for_every_sample(strategy, dense, make_images):
    images = make_images(32)
    composer = LEMaRTComposer(mask_strategy=strategy, dense=dense)
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


@pytest.mark.parametrize("dense", [False, True])
def test_flat_images_are_never_a_no_op(dense):
    """Black, white and grey images defeat most perturbations; the guard still changes the foreground."""
    flat = torch.cat([torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32), torch.full((2, 3, 32, 32), 0.5)])
    composer = LEMaRTComposer(perturbations=["hue", "sharpness"], max_perturbations=2, dense=dense)
    output = composer(flat, _seeded(0))
    mask = output["mask"]
    change = ((output["pixel_values"][:, :3] - flat).abs() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3)))
    assert (change >= composer.min_change).all(), change


@pytest.mark.parametrize("dense", [False, True])
def test_empty_mask_leaves_the_image_untouched(dense, make_images, monkeypatch):
    """An empty mask (mask_ratio 0 is refused, but a mask can come out empty) changes nothing, and is not redrawn."""
    def empty_mask(strategy, batch, height, width, *args, **kwargs):
        return torch.zeros(batch, 1, height, width)

    monkeypatch.setattr(composer_module, "make_mask", empty_mask)
    images = make_images(3)
    output = LEMaRTComposer(dense=dense)(images, _seeded(0))
    assert torch.equal(output["pixel_values"][:, :3], images)


def test_dense_redraws_keep_the_first_visible_candidate(make_images):
    """Drawn up front, the redraws end as one-at-a-time redrawing ends: the first visible candidate, else grey."""
    flat = torch.cat([torch.full((1, 3, 64, 64), level) for level in (0.2, 0.35, 0.5, 0.65, 0.8)])
    images = torch.cat([make_images(3), flat])  # blur and sharpness leave a flat image as it is
    composer = LEMaRTComposer(
        perturbations=["defocus_blur", "sharpness", "brightness"], max_perturbations=1, dense=True
    )
    mask = torch.ones(8, 1, 64, 64)
    candidates = composer.perturb(images.repeat(3, 1, 1, 1), _seeded(4), dense=True).view(3, 8, 3, 64, 64)
    chosen = composer._perturb_visibly_at_once(images, mask, _seeded(4), out=torch.empty_like(images))
    kept = []
    for sample in range(8):
        change = (candidates[:, sample] - images[sample])[..., ::4, ::4].abs().mean(dim=(1, 2, 3))
        visible = (change >= composer.min_change).nonzero().flatten().tolist()
        if visible:
            expected = candidates[visible[0], sample]
        else:
            expected = images[sample] + torch.where(images[sample] < 0.5, 0.06, -0.06)
        torch.testing.assert_close(chosen[sample], expected)
        kept.append(visible[0] if visible else "grey")
    assert 0 in kept and "grey" in kept and {1, 2} & set(kept), kept  # every way out is exercised


@pytest.mark.parametrize("size", [64, 52])  # 52: patches of unequal sizes
@pytest.mark.parametrize("strategy", ["random", "grid"])
def test_dense_composites_never_read_back_from_the_device(strategy, size, make_images):
    """No nonzero / item / bool of a tensor: on a GPU the training loop then never waits for the composer."""
    reads = []

    class ReadBacks(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten._local_scalar_dense, torch.ops.aten.nonzero):
                reads.append(func)
            return func(*args, **(kwargs or {}))

    images = make_images(16)[..., :size, :size]
    with ReadBacks():
        output = LEMaRTComposer(mask_strategy=strategy, dense=True)(images, _seeded(0))
    assert reads == []
    background = output["mask"].expand_as(images) == 0
    assert torch.equal(output["pixel_values"][:, :3][background], images[background])


@pytest.mark.parametrize("dense", [False, True])
def test_same_seed_same_composites_other_seed_other_composites(dense, make_images):
    images = make_images(8)
    composer = LEMaRTComposer(dense=dense)
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


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_keep_their_dtype_range_and_background(dtype, dense, make_images):
    images = make_images(8).to(dtype)
    images[0] = 0  # black: no perturbation moves it visibly, so the towards-grey fallback runs
    output = LEMaRTComposer(dense=dense)(images, _seeded(0))
    composite = output["pixel_values"][:, :3]
    assert composite.dtype == dtype and composite.min() >= 0 and composite.max() <= 1
    background = ~output["mask"].bool().expand_as(images)
    assert torch.equal(composite[background], images[background])
    assert (composite[0][~background[0]] != 0).all()


def test_tiny_images_change_every_masked_pixel():
    images = torch.zeros(4, 3, 2, 2)  # smaller than the 4-pixel sampling stride of the visibility check
    output = LEMaRTComposer(grid_size=2)(images, _seeded(0))
    foreground = output["mask"].bool().expand_as(images)
    assert (output["pixel_values"][:, :3][foreground] != 0).all()


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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"grid_size": 0}, "grid_size must be a positive int"),
        ({"grid_size": 8.0}, "grid_size must be a positive int"),
        ({"max_redraws": -1}, "max_redraws must be an int >= 0"),
        ({"perturbations": ["blur"]}, r"Unknown perturbation\(s\) \['blur'\]; the built-in ones are"),
        ({"perturbations": "hue"}, "must be a list of names"),
        ({"min_perturbations": 1.5}, "must be ints"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LEMaRTComposer(**kwargs)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="torch.Tensor"):
        LEMaRTComposer()(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="non-empty batch"):
        LEMaRTComposer(dense=True)(torch.rand(0, 3, 8, 8))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        LEMaRTComposer()(torch.rand(1, 3, 8, 8), generator=0)
    with pytest.raises(ValueError, match="mask strategy"):
        LEMaRTComposer(mask_strategy="stripes")
    with pytest.raises(ValueError, match="B, 3, H, W"):
        LEMaRTComposer()(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        LEMaRTComposer()(torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8))
