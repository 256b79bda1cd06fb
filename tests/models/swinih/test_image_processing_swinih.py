import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf import SwinIHImageProcessor

H, W = 45, 37


def rgb_array():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def mask_array():
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:30, 5:25] = 255
    return mask


@pytest.mark.parametrize(
    "make_image",
    [
        lambda a: a,  # numpy uint8 HWC
        lambda a: Image.fromarray(a),  # PIL RGB
        lambda a: Image.fromarray(a).convert("RGBA"),
        lambda a: Image.fromarray(a).convert("L"),
        lambda a: torch.from_numpy(a).permute(2, 0, 1),  # torch uint8 CHW
        lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255,  # torch float CHW
        lambda a: a.astype(np.uint16) * 257,  # 16-bit numpy
        lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257),  # 16-bit PIL (I;16)
    ],
)
@pytest.mark.parametrize(
    "make_mask",
    [
        lambda m: m,  # uint8 0/255
        lambda m: m > 0,  # bool
        lambda m: m.astype(np.float32) / 255,  # float
        lambda m: np.repeat(m[..., None], 3, axis=-1),  # 3 channels
        lambda m: Image.fromarray(m),
        lambda m: torch.from_numpy(m > 0)[None],  # torch (1, H, W)
    ],
)
def test_every_input_type_gives_four_channel_pixel_values(make_image, make_mask):
    processor = SwinIHImageProcessor()
    batch = processor(make_image(rgb_array()), make_mask(mask_array()))
    assert batch["pixel_values"].shape == (1, 4, 256, 256)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["original_sizes"].tolist() == [[H, W]]
    mask_channel = batch["pixel_values"][0, 3]
    assert mask_channel.min() == 0 and mask_channel.max() == pytest.approx(1, abs=1e-6)


def test_keep_size_is_exact_and_paths_work(tmp_path):
    Image.fromarray(rgb_array()).save(tmp_path / "a.png")
    Image.fromarray(mask_array()).save(tmp_path / "a_mask.png")
    processor = SwinIHImageProcessor(do_resize=False)
    pixel_values = processor(str(tmp_path / "a.png"), tmp_path / "a_mask.png")["pixel_values"]
    assert pixel_values.shape == (1, 4, H, W)
    expected = torch.from_numpy(rgb_array()).permute(2, 0, 1).float() / 255
    assert torch.equal(pixel_values[0, :3], expected)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(rgb_array())
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    pixel_values = SwinIHImageProcessor(do_resize=False)(str(tmp_path / "rotated.jpg"), np.ones((W, H)))["pixel_values"]
    assert pixel_values.shape == (1, 4, W, H)
    with Image.open(tmp_path / "rotated.jpg") as opened:  # a PIL image the caller opened: rotated the same way
        from_pil = SwinIHImageProcessor(do_resize=False)(opened, np.ones((W, H)))["pixel_values"]
    assert torch.equal(from_pil, pixel_values)


def test_a_batch_of_masks_as_one_array():
    masks = np.stack([mask_array(), 255 - mask_array()])  # (B, H, W)
    batch = SwinIHImageProcessor(do_resize=False)([rgb_array(), rgb_array()], masks)["pixel_values"]
    assert torch.equal(batch[1, 3], 1 - batch[0, 3])


def test_batches_and_post_processing_restore_sizes():
    processor = SwinIHImageProcessor(size={"height": 64, "width": 64})
    images = [rgb_array(), rgb_array()[:30, :20]]
    masks = [mask_array(), mask_array()[:30, :20]]
    batch = processor(images, masks)
    assert batch["pixel_values"].shape == (2, 4, 64, 64)
    restored = processor.post_process_harmonization(batch["pixel_values"][:, :3], batch["original_sizes"])
    assert [image.size for image in restored] == [(W, H), (20, 30)]  # PIL sizes are (width, height)
    tensors = processor.post_process_harmonization(batch["pixel_values"][:, :3], output_type="pt")
    assert tensors[0].shape == (3, 64, 64)


def test_config_round_trip(tmp_path):
    processor = SwinIHImageProcessor(size={"height": 128, "width": 96})
    processor.save_pretrained(tmp_path)
    loaded = SwinIHImageProcessor.from_pretrained(tmp_path)
    assert loaded.size == {"height": 128, "width": 96} and loaded.do_resize


@pytest.mark.parametrize(
    "images, masks, message",
    [
        (rgb_array(), mask_array()[:20], r"image 0 has size \(45, 37\) \(H, W\) but its mask has \(20, 37\)"),
        (rgb_array(), None, "a mask is required"),
        ([rgb_array(), rgb_array()], [mask_array()], "got 2 images but 1 masks"),
        (np.zeros((0, 10, 3), np.uint8), np.zeros((0, 10), np.uint8), "image is empty"),
        (np.zeros((2, 3, 4, 5, 6), np.uint8), mask_array(), "must be 2-D"),
        (np.zeros((H, W, 7), np.uint8), mask_array(), "1, 3 or 4 channels"),
        (rgb_array().astype(np.float32), mask_array(), r"float inputs must be in \[0, 1\]"),
        (Image.fromarray(rgb_array()).convert("F"), mask_array(), r"float inputs must be in \[0, 1\]"),
        (Image.fromarray(np.full((H, W), 255, np.int32)), mask_array(), "mode 'I' .* has no defined range"),
        (rgb_array(), Image.fromarray(mask_array()).convert("I"), "mode 'I' .* has no defined range"),
        (np.full((H, W, 3), np.nan, np.float32), mask_array(), "contains NaN"),
        ("does/not/exist.png", mask_array(), "image file not found"),
        (12, mask_array(), "must be a path, PIL image"),
    ],
)
def test_bad_inputs_raise_clear_errors(images, masks, message):
    with pytest.raises(ValueError, match=message):
        SwinIHImageProcessor()(images, masks)


def test_pil_float_and_16_bit_modes_are_scaled_like_arrays():
    values = np.random.default_rng(1).random((H, W)).astype(np.float32)
    float_image = SwinIHImageProcessor(do_resize=False)(Image.fromarray(values, mode="F"), mask_array())
    torch.testing.assert_close(float_image["pixel_values"][0, 0], torch.from_numpy(values), atol=0, rtol=0)
    # A dark 16-bit image ("I;16", as Pillow opens 16-bit files) stays dark: scaled by 65535 whatever its values.
    dark = np.full((H, W), 200, np.uint16)
    dark_image = SwinIHImageProcessor(do_resize=False)(Image.fromarray(dark), mask_array())
    assert dark_image["pixel_values"][0, :3].unique().item() == pytest.approx(200 / 65535)


def test_rgba_mask_with_transparency_is_its_alpha():
    alpha = mask_array()
    cut_out = np.concatenate([np.full((H, W, 3), 255, np.uint8), alpha[..., None]], axis=-1)  # white, alpha = object
    from_alpha = SwinIHImageProcessor(do_resize=False)(rgb_array(), Image.fromarray(cut_out))["pixel_values"][0, 3]
    assert torch.equal(from_alpha, torch.from_numpy(alpha > 0).float())
    opaque = np.concatenate([np.repeat(alpha[..., None], 3, axis=-1), np.full((H, W, 1), 255, np.uint8)], axis=-1)
    from_rgb = SwinIHImageProcessor(do_resize=False)(rgb_array(), Image.fromarray(opaque))["pixel_values"][0, 3]
    assert torch.equal(from_rgb, from_alpha)


@pytest.mark.parametrize("size", [64, (64, 64), {"height": 64, "width": 64}])
def test_size_forms(size):
    assert SwinIHImageProcessor(size=size).size == {"height": 64, "width": 64}
    assert SwinIHImageProcessor()(rgb_array(), mask_array(), size=size)["pixel_values"].shape == (1, 4, 64, 64)


@pytest.mark.parametrize("size", [{"shortest_edge": 64}, 0, (64,), "64"])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(ValueError, match="size must be"):
        SwinIHImageProcessor()(rgb_array(), mask_array(), size=size)


def test_unknown_arguments_are_reported(caplog):
    SwinIHImageProcessor()(rgb_array(), mask_array(), do_normalize=True)
    assert "ignores these arguments: ['do_normalize']" in caplog.text


def test_corrupt_file_names_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        SwinIHImageProcessor()(str(broken), mask_array())


def test_different_sizes_without_resize_raise():
    with pytest.raises(ValueError, match="cannot be batched with do_resize=False"):
        SwinIHImageProcessor(do_resize=False)([rgb_array(), rgb_array()[:20]], [mask_array(), mask_array()[:20]])


def test_processor_output_feeds_the_model_directly():
    from lemart_hf import SwinIHConfig, SwinIHForHarmonization

    model = SwinIHForHarmonization(SwinIHConfig(embed_dim=16, depths=[1, 1, 1], num_heads=[2, 2, 2], window_size=4))
    processor = SwinIHImageProcessor(size={"height": 32, "width": 32})
    inputs = processor(rgb_array(), mask_array())
    with torch.no_grad():
        outputs = model(**inputs)
    (image,) = processor.post_process_harmonization(outputs, inputs["original_sizes"])
    assert image.size == (W, H)


# ----- keep_uint8: what the pipeline keeps of a full-size input ----------------------------------------------------
@pytest.mark.parametrize(
    "make_image",
    [
        lambda a: a,  # numpy uint8 HWC: a view, no copy
        lambda a: torch.from_numpy(a).permute(2, 0, 1),  # torch uint8 CHW
        lambda a: Image.fromarray(a),
        lambda a: Image.fromarray(a).convert("RGBA"),
        lambda a: Image.fromarray(a).convert("L"),
        lambda a: Image.fromarray(a[..., 0] > 128),  # mode "1"
        lambda a: Image.fromarray(a).quantize(16),  # palette
        lambda a: Image.fromarray(a).convert("CMYK"),
        lambda a: a.astype(np.uint16) * 257,  # 16-bit: stays float
        lambda a: a.astype(np.float32) / 255,
    ],
)
def test_keep_uint8_images_are_the_float_conversion_without_a_float_copy(make_image):
    from lemart_hf.models.swinih.image_processing_swinih import to_rgb

    image = make_image(rgb_array())
    kept, reference = to_rgb(image, keep_uint8=True), to_rgb(image)
    assert kept.shape == reference.shape == (3, H, W)
    if kept.dtype == torch.uint8:
        assert torch.equal(kept.float() / 255, reference)
    else:
        assert kept.dtype == torch.float32 and torch.equal(kept, reference)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        assert np.shares_memory(kept.numpy(), image)


@pytest.mark.parametrize(
    "make_mask, dtype",
    [
        (lambda m: m, torch.uint8),  # 0 / 255
        (lambda m: m > 0, torch.uint8),  # bool
        (lambda m: (m > 0).astype(np.uint8), torch.uint8),  # a 0/1 mask
        (lambda m: Image.fromarray(m), torch.uint8),  # "L"
        (lambda m: Image.fromarray((m > 0).astype(np.uint8) * 3).convert("P"), torch.uint8),  # palette: index != 0
        (lambda m: Image.fromarray(np.dstack([np.full((H, W, 3), 255, np.uint8), m]), "RGBA"), torch.uint8),
        (lambda m: Image.fromarray(np.dstack([m, m, m, np.full((H, W), 255, np.uint8)]), "RGBA"), torch.float32),
        (lambda m: np.repeat(m[..., None], 3, axis=-1), torch.float32),  # 3 channels: averaged
        (lambda m: m.astype(np.float32) / 255, torch.float32),
        (lambda m: (m > 0).astype(np.int64), torch.float32),
    ],
)
def test_keep_uint8_masks_are_the_float_conversion(make_mask, dtype):
    from lemart_hf.models.swinih.image_processing_swinih import to_mask

    soft = mask_array().copy()
    soft[10:30, 5] = 77  # a soft edge
    mask = make_mask(soft)
    kept, reference = to_mask(mask, keep_uint8=True), to_mask(mask)
    assert kept.shape == reference.shape == (1, H, W) and kept.dtype == dtype
    assert torch.equal(kept.float() / 255 if dtype == torch.uint8 else kept, reference)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "F"])
def test_large_pil_images_convert_a_strip_at_a_time_to_the_same_array(mode):
    from lemart_hf.models.swinih.image_processing_swinih import _pil_to_array

    rng = np.random.default_rng(2)
    array = rng.integers(0, 256, (1100, 2048, 3), dtype=np.uint8)  # 1 Mpx strips: 3 of them
    image = Image.fromarray(array).convert("RGBA" if mode == "P" else mode)
    if mode == "P":
        image = image.convert("RGB").quantize(64)
    elif mode in ("I;16", "F"):
        image = Image.fromarray(array[..., 0].astype(np.uint16 if mode == "I;16" else np.float32) * 3)
    expected = np.array(image.convert("RGB") if mode == "P" else image)
    assert np.array_equal(_pil_to_array(image), expected)
