"""The "image-harmonization" pipeline: input types and batch forms, sizes, exact background, edge cases, remote code."""

import json
import os
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from lemart_hf import ImageHarmonizationPipeline

WORKING_SIZE = 64


def assert_background_exact(output: Image.Image, image: np.ndarray, mask: np.ndarray):
    result = np.asarray(output)
    assert result.shape == image.shape
    assert np.array_equal(result[mask == 0], image[mask == 0])


# ----- registration and construction ----------------------------------------------------------------------------
def test_task_is_registered_on_import(pipe):
    assert "image-harmonization" in PIPELINE_REGISTRY.get_supported_tasks()
    assert isinstance(pipe, ImageHarmonizationPipeline)
    assert pipe.device == torch.device("cpu")
    assert pipe.image_processor.size == {"height": WORKING_SIZE, "width": WORKING_SIZE}


def test_model_without_processor_falls_back_to_default_processor(model_dir, tmp_path):
    from lemart_hf import SwinIHForHarmonization

    SwinIHForHarmonization.from_pretrained(model_dir).save_pretrained(tmp_path)
    pipe = pipeline("image-harmonization", model=str(tmp_path), device="cpu")
    assert pipe.image_processor.size == {"height": 256, "width": 256}


# ----- input types ----------------------------------------------------------------------------------------------
def _as(kind, array, tmp_path, name):
    if kind == "pil":
        return Image.fromarray(array)
    if kind == "numpy":
        return array
    if kind == "numpy_float":
        return array.astype(np.float32) / 255
    if kind == "torch":  # channels first
        tensor = torch.from_numpy(array)
        return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    if kind == "torch_float":
        tensor = torch.from_numpy(array).float() / 255
        return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    if kind == "path":
        path = tmp_path / f"{name}.png"
        Image.fromarray(array).save(path)
        return str(path)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["pil", "numpy", "numpy_float", "torch", "torch_float", "path"])
def test_every_input_type_gives_the_same_image(pipe, make_pair, tmp_path, kind):
    image, mask = make_pair(45, 71)
    expected = pipe(image, mask)
    output = pipe(_as(kind, image, tmp_path, "image"), _as(kind, mask, tmp_path, "mask"))
    assert isinstance(output, Image.Image) and output.mode == "RGB" and output.size == (71, 45)
    assert np.array_equal(np.asarray(output), np.asarray(expected))
    assert_background_exact(output, image, mask)


def test_call_forms_and_batching_agree(pipe, make_pair):
    pairs = [make_pair(40, 52, seed=0), make_pair(33, 29, seed=1), make_pair(64, 64, seed=2)]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    single = [pipe(image, mask, output_type="pt") for image, mask in pairs]

    def check(outputs):
        assert len(outputs) == len(single)
        for output, reference in zip(outputs, single):
            assert output.shape == reference.shape
            torch.testing.assert_close(output, reference, atol=2e-5, rtol=0)

    check(pipe(images, masks, output_type="pt"))
    check(pipe(images, masks, output_type="pt", batch_size=2))
    check(pipe(tuple(images), tuple(masks), output_type="pt", batch_size=3))
    check(pipe([{"image": i, "mask": m} for i, m in pairs], output_type="pt", batch_size=2))
    check(pipe([(i, m) for i, m in pairs], output_type="pt"))
    check(list(pipe(({"image": i, "mask": m} for i, m in pairs), output_type="pt", batch_size=2)))
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})  # rows of PIL images
    columns = {"image": [Image.fromarray(i) for i in images], "mask": [Image.fromarray(m) for m in masks]}
    rows = datasets.Dataset.from_dict(columns, features=features)
    check(list(pipe(rows, output_type="pt", batch_size=2)))
    torch.testing.assert_close(pipe({"image": images[0], "mask": masks[0]}, output_type="pt"), single[0])


def test_four_dimensional_batches(pipe, make_pair):
    pairs = [make_pair(40, 40, seed=s) for s in range(3)]
    images = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i, _ in pairs])  # (B, 3, H, W) uint8
    masks = torch.stack([torch.from_numpy(m) for _, m in pairs])  # (B, H, W)
    outputs = pipe(images, masks, batch_size=2)
    assert len(outputs) == 3
    for output, (image, mask) in zip(outputs, pairs):
        assert_background_exact(output, image, mask)
    outputs = pipe(np.stack([i for i, _ in pairs]), np.stack([m for _, m in pairs])[:, None])  # (B, 1, H, W)
    assert [o.size for o in outputs] == [(40, 40)] * 3


@pytest.mark.parametrize("output_type", ["pil", "pt", "np"])
def test_output_types(pipe, make_pair, output_type):
    image, mask = make_pair(31, 47)
    output = pipe(image, mask, output_type=output_type)
    if output_type == "pil":
        assert output.size == (47, 31)
    elif output_type == "pt":
        assert output.shape == (3, 31, 47) and output.dtype == torch.float32
        background = torch.from_numpy(mask == 0)
        reference = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        assert torch.equal(output[:, background], reference[:, background])
    else:
        assert output.shape == (31, 47, 3) and output.dtype == np.float32 and output.flags.c_contiguous
        assert np.array_equal(output, pipe(image, mask, output_type="pt").permute(1, 2, 0).numpy())


@pytest.mark.parametrize("method", ["affine", "offset", "resize"])
def test_8bit_and_float_inputs_give_the_same_outputs(pipe, make_pair, method):
    """A uint8 input stays uint8 at full size (strips converted, PIL output pasted over its pixels); a float input
    goes through float tensors. Both give the same float result, and the PIL output is that result rounded."""
    image, mask = make_pair(130, 170)
    as_float = (image.astype(np.float32) / 255, mask.astype(np.float32) / 255)
    options = {"highres_method": method}
    float_pt = pipe(*as_float, output_type="pt", **options)
    assert torch.equal(pipe(image, mask, output_type="pt", **options), float_pt)
    assert np.array_equal(pipe(image, mask, output_type="np", **options), float_pt.permute(1, 2, 0).numpy())
    rounded = (float_pt.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for inputs in ((image, mask), as_float, (Image.fromarray(image), Image.fromarray(mask))):
        assert np.array_equal(np.asarray(pipe(*inputs, **options)), rounded)


class _LargestFloatTensor(TorchDispatchMode):
    """Records the most elements of any floating-point tensor an operation returns while it is active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in tree_leaves(result):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                self.largest = max(self.largest, value.numel())
        return result


def test_an_8bit_photo_gets_no_full_size_float_copy(pipe, make_pair):
    """Structural memory check: harmonizing an 8-bit photo into a PIL image creates no float tensor of even one
    full-size channel (H x W); strips only. A float input, which is full-size float by definition, shows that the
    probe sees such tensors."""
    height, width = 2048, 1536
    image, mask = make_pair(height, width)
    image, mask = Image.fromarray(image), Image.fromarray(mask)
    with _LargestFloatTensor() as probe:
        output = pipe(image, mask)
    assert output.size == (width, height)
    assert 0 < probe.largest < height * width // 2
    with _LargestFloatTensor() as probe:
        pipe(np.asarray(image, dtype=np.float32) / 255, mask)
    assert probe.largest >= 3 * height * width


# ----- sizes and the background ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (33, 17), (64, 64), (97, 131), (250, 190)])
@pytest.mark.parametrize("method", ["affine", "offset", "resize"])
def test_output_size_equals_input_size_and_background_is_exact(pipe, make_pair, size, method):
    image, mask = make_pair(*size)
    if mask.max() == 0:
        mask[0, 0] = 255
    output = pipe(image, mask, highres_method=method)
    assert output.size == (size[1], size[0])
    assert_background_exact(output, image, mask)


def test_large_input_is_changed_inside_the_mask_only(pipe, make_pair):
    image, mask = make_pair(300, 260)
    result = np.asarray(pipe(image, mask)).astype(int)
    assert_background_exact(Image.fromarray(result.astype(np.uint8)), image, mask)
    assert np.abs(result - image)[mask > 0].mean() > 0.5  # an untrained model still changes the foreground


def test_empty_mask_returns_the_input_unchanged(pipe, make_pair):
    image, _ = make_pair(50, 70)
    empty = np.zeros(image.shape[:2], np.uint8)
    assert np.array_equal(np.asarray(pipe(image, empty)), image)
    as_float = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    assert torch.equal(pipe(as_float, torch.zeros(50, 70), output_type="pt"), as_float)


def test_full_mask(pipe, make_pair):
    image, _ = make_pair(80, 90)
    output = pipe(image, np.full(image.shape[:2], 255, np.uint8), output_type="pt")
    assert output.shape == (3, 80, 90) and torch.isfinite(output).all()
    assert 0 <= output.min() and output.max() <= 1


def test_soft_mask(pipe, make_pair):
    image, mask = make_pair(120, 100)
    soft = np.array(Image.fromarray(mask).resize((25, 30), Image.BILINEAR).resize((100, 120), Image.BILINEAR))
    assert 0 < ((soft > 0) & (soft < 255)).sum()
    output = pipe(image, soft, output_type="pt")
    reference = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    background = torch.from_numpy(soft == 0)
    assert torch.equal(output[:, background], reference[:, background])
    assert 0 <= output.min() and output.max() <= 1


# ----- image modes ----------------------------------------------------------------------------------------------
def test_rgba_input_ignores_alpha(pipe, make_pair):
    image, mask = make_pair(40, 44)
    rgba = np.concatenate([image, np.full((40, 44, 1), 7, np.uint8)], axis=-1)
    output = pipe(Image.fromarray(rgba, "RGBA"), mask)
    assert output.mode == "RGB"
    assert np.array_equal(np.asarray(output), np.asarray(pipe(image, mask)))


def test_grayscale_input_gives_rgb(pipe, make_pair):
    image, mask = make_pair(40, 44)
    gray = Image.fromarray(image).convert("L")
    output = pipe(gray, mask)
    assert output.mode == "RGB" and output.size == (44, 40)
    result = np.asarray(output)
    assert all(np.array_equal(result[..., c][mask == 0], np.asarray(gray)[mask == 0]) for c in range(3))


def test_sixteen_bit_inputs(pipe, make_pair):
    image, mask = make_pair(40, 44)
    deep = image.astype(np.uint16) * 257 + 3
    output = pipe(deep, mask, output_type="pt")
    reference = torch.from_numpy(deep.astype(np.float32) / 65535).permute(2, 0, 1)
    background = torch.from_numpy(mask == 0)
    torch.testing.assert_close(output[:, background], reference[:, background], atol=1e-6, rtol=0)
    gray16 = Image.fromarray(np.ascontiguousarray(deep[..., 0]))
    assert gray16.mode == "I;16"
    assert pipe(gray16, mask).size == (44, 40)


def _with_orientation(array: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    return image


def test_exif_orientation_is_applied(pipe, make_pair, tmp_path):
    stored, _ = make_pair(30, 40)  # stored 40 wide x 30 high; orientation 6 displays it 30 wide x 40 high
    path = tmp_path / "rotated.jpg"
    _with_orientation(stored, 6).save(path, exif=_with_orientation(stored, 6).info["exif"], quality=95)
    displayed_mask = np.zeros((40, 30), np.uint8)
    displayed_mask[10:30, 5:25] = 255
    assert pipe(str(path), displayed_mask).size == (30, 40)
    with Image.open(path) as opened:  # a PIL image with the tag is oriented the same way
        assert pipe(opened, displayed_mask).size == (30, 40)
    with pytest.raises(ValueError, match="mask"):
        pipe(str(path), np.zeros((30, 40), np.uint8))


# ----- errors ---------------------------------------------------------------------------------------------------
def test_size_mismatch_is_an_error_unless_resize_mask(pipe, make_pair):
    image, _ = make_pair(40, 50)
    mask = np.full((20, 25), 255, np.uint8)
    with pytest.raises(ValueError, match=r"image is 50x40 but its mask is 25x20"):
        pipe(image, mask)
    output = pipe(image, mask, resize_mask=True)
    assert output.size == (50, 40)


def test_bad_inputs_raise_clear_errors(pipe, make_pair, tmp_path):
    image, mask = make_pair(20, 20)
    with pytest.raises(ValueError, match="mask is required"):
        pipe(image)
    with pytest.raises(ValueError, match="mask is required"):
        pipe([image, image])
    with pytest.raises(ValueError, match="2 images but 1 masks"):
        pipe([image, image], [mask])
    with pytest.raises(ValueError, match="single mask"):
        pipe([image, image], mask)
    with pytest.raises(ValueError, match="'image' and 'mask'"):
        pipe({"image": image})
    with pytest.raises(ValueError, match="not found"):
        pipe(image, str(tmp_path / "missing.png"))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        pipe(str(tmp_path / "broken.png"), mask)
    with pytest.raises(ValueError, match="output_type"):
        pipe(image, mask, output_type="jpeg")
    with pytest.raises(ValueError, match="highres_method"):
        pipe(image, mask, highres_method="bicubic")
    with pytest.raises(TypeError, match="unexpected"):
        pipe(image, mask, colour="red")


# ----- parameters -----------------------------------------------------------------------------------------------
def test_working_size_parameter(pipe, make_pair):
    image, mask = make_pair(100, 120)
    assert pipe.preprocess({"image": image, "mask": mask})["pixel_values"].shape == (1, 4, 64, 64)
    assert pipe.preprocess({"image": image, "mask": mask}, working_size=(32, 48))["pixel_values"].shape == (
        1,
        4,
        32,
        48,
    )
    assert pipe(image, mask, working_size=32).size == (120, 100)


def test_device_argument(model_dir, make_pair):
    image, mask = make_pair(30, 30)
    cpu = pipeline("image-harmonization", model=str(model_dir), device=-1)
    assert cpu.device.type == "cpu"
    if torch.cuda.is_available():
        gpu = pipeline("image-harmonization", model=str(model_dir), device="cuda")
        assert next(gpu.model.parameters()).is_cuda
        torch.testing.assert_close(
            gpu(image, mask, output_type="pt"), cpu(image, mask, output_type="pt"), atol=2e-3, rtol=0
        )


def test_dtype_bfloat16_keeps_the_quality_of_float32():
    """`pipeline(..., dtype=torch.bfloat16)` (transformers' argument) runs the model in bfloat16; on the packaged
    model and its real sample composites the full-resolution output stays within 0.03 of float32 (measured: 0.012)
    and the background stays exact."""
    from lemart_hf.default_model import default_model_path
    from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR

    pairs = [
        {"image": path, "mask": path.with_name(f"{path.stem}_mask.png")}
        for path in sorted(SAMPLE_COMPOSITES_DIR.glob("*.jpg"))
    ]
    pipes = {
        dtype: pipeline("image-harmonization", model=default_model_path(), device="cpu", dtype=dtype)
        for dtype in (torch.float32, torch.bfloat16)
    }
    assert pipes[torch.bfloat16].model.dtype == torch.bfloat16
    outputs = {dtype: pipe(pairs, output_type="pt") for dtype, pipe in pipes.items()}
    for pair, low, high in zip(pairs, outputs[torch.bfloat16], outputs[torch.float32]):
        assert low.dtype == torch.float32 and float((low - high).abs().max()) <= 0.03
        background = torch.from_numpy(np.asarray(Image.open(pair["mask"]).convert("L")) == 0)
        assert torch.equal(low[:, background], high[:, background])


# ----- saved folders and remote code ----------------------------------------------------------------------------
def test_saved_pipeline_loads_with_remote_code_where_lemart_hf_is_absent(pipe, make_pair, tmp_path):
    folder = tmp_path / "saved"
    pipe.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["image-harmonization"]["impl"] == "image_harmonization.ImageHarmonizationPipeline"
    assert config["custom_pipelines"]["image-harmonization"]["pt"] == ["AutoModelForImageToImage"]
    for name in ("image_harmonization.py", "highres.py", "image_processing_swinih.py", "modeling_swinih.py"):
        assert (folder / name).is_file() and not (folder / name).is_symlink(), name

    image, mask = make_pair(77, 91)
    np.save(folder / "image.npy", image)
    np.save(folder / "mask.npy", mask)
    torch.save(pipe(image, mask, output_type="pt"), folder / "expected.pt")

    # In-process, with lemart_hf installed, such a folder loads without remote code through pipeline_class.
    local = pipeline("image-harmonization", model=str(folder), pipeline_class=ImageHarmonizationPipeline, device="cpu")
    assert torch.equal(local(image, mask, output_type="pt"), torch.load(folder / "expected.pt"))

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["lemart_hf"] = None  # lemart_hf is not importable in this process
        import numpy as np, torch
        from transformers import pipeline
        folder = {str(folder)!r}
        pipe = pipeline("image-harmonization", model=folder, trust_remote_code=True, device="cpu")
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
        assert type(pipe.model).__module__.startswith("transformers_modules"), type(pipe.model).__module__
        image, mask = np.load(folder + "/image.npy"), np.load(folder + "/mask.npy")
        out = pipe(image, mask, output_type="pt")
        assert torch.equal(out, torch.load(folder + "/expected.pt")), (out - torch.load(folder + "/expected.pt")).abs().max()
        batch = pipe([image, image[:40]], [mask, mask[:40]], batch_size=2)
        assert [b.size for b in batch] == [(91, 77), (91, 40)]
        print("remote-ok", type(pipe).__name__)
        """
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environment, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-ok ImageHarmonizationPipeline" in result.stdout
