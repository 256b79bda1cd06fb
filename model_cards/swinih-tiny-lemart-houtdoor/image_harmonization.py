"""The "image-harmonization" pipeline: (composite, mask) of any size in, harmonized image of the same size out.

The model runs at its working size (the image processor's `size`, e.g. 256x256); its correction is carried to the
input's own resolution by `highres.transfer_harmonization` (a local affine colour transform fitted at the working
size and applied at full size), so a 4096x4096 photo is harmonized without running the network at 4096x4096.
Outside the mask the output equals the input exactly.

An 8-bit input stays 8-bit at full size: the image and mask are kept as uint8, only strips of rows are converted
to float, and a PIL output is the input's pixels with the harmonized foreground pasted over them. So an 8000x8000
photo needs about its own size again (the uint8 copy) plus the output image, not float copies of either.

This file is copied next to the weights by `pipe.save_pretrained`, which `lemart_hf.hub.save_hub_folder` uses to
write every model folder (with `highres.py` and `image_processing_swinih.py`, linked into this folder for that
reason), so it imports nothing from lemart_hf.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline
from transformers.utils import logging

from .highres import (
    TRANSFER_METHODS,
    harmonized_regions,
    to_uint8,
    to_working_size,
    transfer_harmonization,
)
from .image_processing_swinih import (
    SwinIHImageProcessor,
    check_finite_prediction,
    is_batch,
    load_image,
    size_dict,
    split_masks,
    to_mask,
    to_rgb,
)

logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("pil", "pt", "np")


def _open(value: Any, name: str) -> Any:
    """Paths are read (EXIF orientation applied), naming the input in errors; the rest is left to `to_rgb` etc."""
    if isinstance(value, (str, os.PathLike)):
        try:
            return load_image(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from error
    return value


class _RowsDataset(torch.utils.data.Dataset):
    """A Hugging Face `datasets.Dataset` (rows as dicts) as the torch `Dataset` that `Pipeline` streams."""

    def __init__(self, rows: Any):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def _first(value: Any) -> Any:
    """One sample out of what the pipeline's batching hands over: a 1-element list or a (1, ...) tensor."""
    while isinstance(value, (list, tuple)):
        value = value[0]
    return value[0] if isinstance(value, torch.Tensor) and value.ndim == 4 else value


def _flatten(values: Any) -> list[torch.Tensor]:
    if isinstance(values, torch.Tensor):
        return list(values) if values.ndim == 4 else [values]
    return [tensor for value in values for tensor in _flatten(value)]


def _full_resolution(
    composite: torch.Tensor,
    mask: torch.Tensor,
    prediction: torch.Tensor,
    low: torch.Tensor,
    output_type: str,
    **options,
):
    """The harmonized image at the composite's size, in the form `output_type` asks for, with no full-size float
    copy of an 8-bit input: a PIL image is the composite's own pixels with the harmonized regions pasted over them;
    a float output is filled a strip at a time."""
    height, width, device = *composite.shape[-2:], composite.device
    options = {"composite_low": low[:3], "mask_low": low[3:], **options}
    if output_type == "pil" and composite.dtype == torch.uint8:
        image = Image.fromarray(composite.permute(1, 2, 0).cpu().numpy())
        for top, left, values in harmonized_regions(composite, mask, prediction, **options):
            planes = to_uint8(values).cpu().numpy()  # rounded as `to_pil`
            # Planar (3, r, c) to PIL: merging three mapped "L" planes is 4x faster than transposing to (r, c, 3).
            channels = [Image.frombuffer("L", plane.shape[::-1], plane, "raw", "L", 0, 1) for plane in planes]
            image.paste(Image.merge("RGB", channels), (left, top))
        return image
    if output_type == "pt":
        out = torch.empty(3, height, width, device=device)
    else:  # (3, H, W) view of an (H, W, 3) array: what `postprocess` returns, or a 16-bit / float input's 8-bit image
        dtype = torch.float32 if output_type == "np" else torch.uint8
        out = torch.empty(height, width, 3, dtype=dtype, device=device).permute(2, 0, 1)
    result = transfer_harmonization(composite, mask, prediction, out=out, **options)
    return Image.fromarray(result.permute(1, 2, 0).cpu().numpy()) if output_type == "pil" else result


class ImageHarmonizationPipeline(Pipeline):
    """Harmonize the masked region of a composite so that it matches the rest of the image.

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline("image-harmonization", model="path/or/hub-id", trust_remote_code=True)  # no lemart_hf needed
    >>> # lemart_hf's own code instead of the folder's copy: pipeline_class=lemart_hf.ImageHarmonizationPipeline
    >>> out = pipe("composite.jpg", "mask.png")                 # PIL image, the composite's size
    >>> outs = pipe([img1, img2], [mask1, mask2], batch_size=2)  # list of PIL images
    >>> out = pipe({"image": img, "mask": mask}, output_type="pt")  # (3, H, W) float tensor in [0, 1]
    ```

    Inputs: images and masks as paths, PIL images (any mode; 16-bit grayscale included), numpy arrays (H, W[, C]) or
    torch tensors ([C, ]H, W); uint8, uint16, bool or float in [0, 1]. Pillow reads 16-bit RGB files as 8-bit: pass
    those as uint16 arrays to keep their precision. Grayscale is replicated to RGB, an image's alpha channel is
    ignored, EXIF orientation is applied (files and PIL images); a mask is 1 (or 255) on the region to harmonize,
    soft values allowed (an integer mask holding only 0 and 1 is a 0/1 mask; a palette mask is foreground where its
    index is not 0), an RGB mask is averaged, an RGBA mask with transparency is its alpha channel. Batches: a
    list of images with a list of masks, a list of `{"image", "mask"}` dicts or (image, mask) pairs, a 4-D array /
    tensor, or a generator, torch `Dataset` or Hugging Face `datasets.Dataset` of such dicts (streamed).

    Parameters (at construction or per call):
        output_type (`str`, defaults to `"pil"`): `"pil"` (RGB uint8), `"pt"` ((3, H, W) float32 tensor in [0, 1])
            or `"np"` ((H, W, 3) float32 array in [0, 1]). Only `"pt"` / `"np"` keep 16-bit precision.
        highres_method (`str`, defaults to `"affine"`): how the correction made at the working size reaches the
            input's size: `"affine"` (local affine colour transform), `"offset"` (smooth additive correction) or
            `"resize"` (resize the prediction itself; blurs the foreground). Unused when the input is the working
            size.
        working_size (`int`, `(height, width)` or `dict`, *optional*): the size the model runs at, at least 8
            pixels a side; defaults to the image processor's `size`.
        resize_mask (`bool`, defaults to `False`): resize a mask whose size differs from its image's (bilinear,
            soft) instead of raising `ValueError`.

    Guarantees: the output has the input's size; where the mask is 0 it equals the input (as float32, so exactly
    the input's pixels for 8-bit input and `"pil"` output); an all-zero mask returns the input unchanged.

    Memory: an 8-bit input is kept as uint8 at full size (see the module docstring): harmonizing an 8000x8000 photo
    into a `"pil"` output takes about 0.5 GB beyond the caller's own decoded images (a uint8 copy of the image and
    mask when they are PIL images, and the output image); `"pt"` / `"np"` outputs are full-size float32 (12 bytes a
    pixel) by definition.
    """

    _load_processor = False
    _load_image_processor = None
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            logger.warning(
                "No image processor found with the model; using SwinIHImageProcessor() with its default working "
                "size 256x256. Save the processor next to the model to make the working size explicit."
            )
            SwinIHImageProcessor.register_for_auto_class("AutoImageProcessor")
            self.image_processor = SwinIHImageProcessor()

    # ----- calling ---------------------------------------------------------------------------------------------
    def __call__(self, images, masks=None, **kwargs):
        """Harmonize one composite (`pipe(image, mask)` or `pipe({"image": ..., "mask": ...})`) or a batch.

        Returns a single output for a single input and a list for a list; see the class docstring for the forms.
        """
        return super().__call__(self._pair(images, masks), **kwargs)

    @staticmethod
    def _pair(images, masks):
        if masks is None:
            if isinstance(images, tuple):
                images = list(images)
            single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor))
            unpaired_list = isinstance(images, list) and images and not isinstance(images[0], (dict, list, tuple))
            if hasattr(images, "column_names") and hasattr(images, "__getitem__"):
                return _RowsDataset(images)  # a Hugging Face datasets.Dataset with "image" and "mask" columns
            if not (single or unpaired_list):
                return images  # a dict, a list of dicts / pairs, a generator or a torch dataset
            raise ValueError("a mask is required: call pipe(image, mask) or pipe({'image': ..., 'mask': ...})")
        if is_batch(images):
            images = list(images)
            masks = split_masks(masks, len(images))
            if len(images) != len(masks):
                raise ValueError(f"got {len(images)} images but {len(masks)} masks; pass one mask per image")
            return [{"image": image, "mask": mask} for image, mask in zip(images, masks)]
        if is_batch(masks):
            raise ValueError(f"got one image but {len(masks)} masks; pass one mask per image")
        return {"image": images, "mask": masks}

    def _sanitize_parameters(
        self, output_type=None, highres_method=None, working_size=None, resize_mask=None, **kwargs
    ):
        if kwargs:
            raise TypeError(f"unexpected argument(s) for the image-harmonization pipeline: {sorted(kwargs)}")
        preprocess, forward, postprocess = {}, {}, {}
        if working_size is not None:
            preprocess["working_size"] = size_dict(working_size)
        if resize_mask is not None:
            preprocess["resize_mask"] = bool(resize_mask)
        if highres_method is not None:
            if highres_method not in TRANSFER_METHODS:
                raise ValueError(f"highres_method must be one of {TRANSFER_METHODS}, got {highres_method!r}")
            forward["highres_method"] = highres_method
        if output_type is not None:
            if output_type not in OUTPUT_TYPES:
                raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
            forward["output_type"] = postprocess["output_type"] = output_type  # the forward makes the output
        return preprocess, forward, postprocess

    # ----- the three steps -------------------------------------------------------------------------------------
    def preprocess(self, inputs, working_size=None, resize_mask: bool = False) -> dict:
        if isinstance(inputs, dict):
            missing = {"image", "mask"} - set(inputs)
            if missing:
                raise ValueError(f"an input dict needs the keys 'image' and 'mask'; missing {sorted(missing)}")
            image, mask = inputs["image"], inputs["mask"]
        elif isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            image, mask = inputs
        else:
            raise ValueError(
                "each input must be {'image': ..., 'mask': ...} or an (image, mask) pair; a mask is required, got "
                f"{type(inputs).__name__}"
            )
        # 8-bit data stays uint8 (a view where it can be): the full-size path converts strips of rows only.
        rgb = to_rgb(_open(image, "image"), keep_uint8=True)
        alpha = to_mask(_open(mask, "mask"), keep_uint8=True)
        if rgb.shape[-2:] != alpha.shape[-2:]:
            if not resize_mask:
                (height, width), (mask_h, mask_w) = rgb.shape[-2:], alpha.shape[-2:]
                raise ValueError(
                    f"image is {width}x{height} but its mask is {mask_w}x{mask_h} (width x height); pass a mask of "
                    "the image's size, or resize_mask=True to resize it"
                )
            alpha = to_working_size(alpha, tuple(rgb.shape[-2:])).clamp(0, 1)
        size = size_dict(working_size if working_size is not None else self.image_processor.size)
        height_width = (size["height"], size["width"])
        # The antialiased resize the processor would do (bit for bit), done here so that the processor gets small
        # float tensors and no full-size float copy is made for it.
        pixel_values = self.image_processor(
            to_working_size(rgb, height_width), to_working_size(alpha, height_width), size=size, return_tensors="pt"
        )["pixel_values"]
        return {"pixel_values": pixel_values, "composite": [rgb], "mask": [alpha]}

    def _forward(self, model_inputs: dict, highres_method: str = "affine", output_type: str = "pil") -> dict:
        pixel_values = model_inputs["pixel_values"]
        outputs = self.model(pixel_values=pixel_values.to(self.model.dtype))
        harmonized = outputs.harmonized if hasattr(outputs, "harmonized") else outputs[0]
        check_finite_prediction(harmonized)
        blended = bool(getattr(self.model.config, "blend_background", False))
        results = []
        for index, (composite, mask) in enumerate(
            zip(_flatten(model_inputs["composite"]), _flatten(model_inputs["mask"]))
        ):
            results.append(
                _full_resolution(
                    composite,
                    mask,
                    harmonized[index].float(),
                    pixel_values[index].float(),
                    output_type,
                    method=highres_method,
                    prediction_is_blended=blended,
                )
            )
        return {"harmonized": results}

    def postprocess(self, model_outputs: dict, output_type: str = "pil"):
        image = _first(model_outputs["harmonized"])  # made by `_forward` in the form output_type asks for
        if output_type == "np":
            return image.permute(1, 2, 0).numpy()  # a view of an (H, W, 3) array
        return image


__all__ = ["OUTPUT_TYPES", "ImageHarmonizationPipeline"]
