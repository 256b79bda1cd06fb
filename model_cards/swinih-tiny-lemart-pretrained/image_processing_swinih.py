"""Image processor for SwinIH (and every lemart_hf harmonization model): (image, mask) pairs -> `pixel_values`.

`pixel_values` is (B, 4, H, W): the composite RGB in [0, 1] (not mean/std normalised, so the model can keep the
background exactly) and the mask in [0, 1] as the 4th channel. Resizing is antialiased bilinear, which agrees with
PIL's BILINEAR and with the evaluation protocol.

Masks: 1 (or 255, 65535, 1.0) = the region to harmonize, soft values allowed. An integer mask whose values are all
0 or 1 (an 8-bit PNG or uint8 array saved as 0/1, a bool-like int array) is a 0/1 mask, not a 0..1/255 one; a
palette (mode "P", VOC-style) mask is foreground wherever its index is not 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import logging

logger = logging.get_logger(__name__)

#: The smallest working size (pixels a side): LEMaRT's 8x8 mask grid needs a pixel per patch, and a prediction
#: on fewer pixels carries next to no spatial colour information for the full-resolution transfer.
MIN_WORKING_SIZE = 8


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file with its EXIF orientation applied; `ValueError` naming the file if it cannot be read (also
    one over PIL's decompression-bomb limit, `Image.MAX_IMAGE_PIXELS` x 2: raise that limit to read it)."""
    try:
        with Image.open(path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # (not a copy: that held the photo twice)
        return image
    except (FileNotFoundError, IsADirectoryError) as error:
        raise ValueError(f"image file not found: {os.fspath(path)!r}") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"refusing to read image {os.fspath(path)!r}: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {os.fspath(path)!r}: corrupt or not an image ({error})") from error


EXIF_ORIENTATION = 0x0112


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """PIL image -> numpy array (H, W[, C]) in its own type: uint8, uint16 (16-bit modes), float32 ("F"), bool ("1").

    Pillow opens 16-bit files as "I;16". Mode "I" (32-bit integers, e.g. `Image.fromarray` of an int32 array or
    `convert("I")` of 8-bit data) says nothing about the range, so it is refused, like an int32 array. 16-bit RGB
    files cannot be read at full precision through Pillow (it opens them as 8-bit "RGB"); pass such an image as a
    uint16 numpy array instead.
    """
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        raise ValueError(
            "a mode 'I' (32-bit integer) image has no defined range; convert it to 'L' (8-bit) or 'I;16', or pass a "
            "uint8 / uint16 / float array"
        )
    mode = image.mode
    if mode not in ("F", "1", "L", "RGB"):
        mode = "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
    width, height = image.size
    rows = min(height, max(1, (1 << 20) // max(1, width)))

    def strip(top: int, bottom: int) -> np.ndarray:
        part = image if (top, bottom) == (0, height) else image.crop((0, top, width, bottom))
        return np.asarray(part if part.mode == mode else part.convert(mode))

    # A strip of rows at a time, into a writable array (torch.from_numpy warns about read-only ones): np.array(image)
    # goes through one bytes copy of the whole image, and Pillow keeps an RGB image in 4 bytes a pixel, so that held
    # about three times the array at once.
    first = strip(0, rows)
    array = np.empty((height, *first.shape[1:]), first.dtype)
    array[:rows] = first
    for top in range(rows, height, rows):
        array[top : top + rows] = strip(top, min(top + rows, height))
    return array


def _array_to_channels_first(
    array: np.ndarray | torch.Tensor, name: str, zero_one: bool = False, keep_uint8: bool = False
) -> torch.Tensor:
    """numpy (H, W[, C]) or torch ([C, ]H, W) -> float32 tensor (C, H, W) in [0, 1].

    With ``zero_one`` (masks), integer data whose values are all 0 or 1 is taken as is (a 0/1 mask), and other
    integer dtypes than uint8 / uint16 are accepted when so. With ``keep_uint8``, 8-bit data (uint8, bool, a uint8
    0/1 mask) is returned as uint8 (C, H, W) meaning v / 255 instead (the same values once divided): a view of
    ``array`` where it is uint8 already, so a full-size photo gets no float copy.
    """
    is_torch = isinstance(array, torch.Tensor)
    tensor = array.detach().cpu() if is_torch else torch.from_numpy(np.ascontiguousarray(array))
    if tensor.ndim == 2:
        tensor = tensor[None]
    elif tensor.ndim == 3:
        channels_last = tensor.shape[-1] in (1, 3, 4) and not (is_torch and tensor.shape[0] in (1, 3, 4))
        if channels_last:
            tensor = tensor.permute(2, 0, 1)
        if tensor.shape[0] not in (1, 3, 4):
            raise ValueError(f"{name} must have 1, 3 or 4 channels, got shape {tuple(array.shape)}")
    else:
        raise ValueError(f"{name} must be 2-D (H, W) or 3-D (C, H, W) / (H, W, C), got shape {tuple(array.shape)}")
    if tensor.dtype == torch.bool:
        return tensor.to(torch.uint8) * 255 if keep_uint8 else tensor.float()
    if zero_one and not tensor.is_floating_point() and tensor.numel() and 0 <= tensor.min() and tensor.max() <= 1:
        return tensor * 255 if keep_uint8 and tensor.dtype == torch.uint8 else tensor.float()
    if tensor.dtype == torch.uint8:
        return tensor if keep_uint8 else tensor.float() / 255.0
    if tensor.dtype == torch.uint16:
        return tensor.float() / 65535.0
    if not tensor.is_floating_point():
        raise ValueError(f"{name} has unsupported dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1]")
    tensor = tensor.float()
    if not tensor.isfinite().all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if tensor.numel() and (tensor.min() < -1e-3 or tensor.max() > 1 + 1e-3):
        raise ValueError(
            f"{name} is float with values in [{tensor.min():.3g}, {tensor.max():.3g}]; float inputs must be in [0, 1]"
        )
    return tensor.clamp(0, 1)


def to_tensor(image, name: str = "image", mask: bool = False, keep_uint8: bool = False) -> torch.Tensor:
    """Any supported image-like input -> float32 tensor (C, H, W) in [0, 1], C in {1, 3, 4}, on the CPU.

    Accepts a path, a PIL image (any mode, 16-bit grayscale included, EXIF orientation applied), a numpy
    array (H, W), (H, W, C) or a torch tensor (C, H, W), (H, W); uint8 / uint16 / bool / float in [0, 1] (a float
    PIL image, mode "F", too). With ``mask``, the mask rules of the module docstring apply (0/1 integer masks,
    palette masks by index). With ``keep_uint8``, 8-bit inputs come back as uint8 (C, H, W), v meaning v / 255
    (for a numpy array or tensor, a view of it), other inputs as float32.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        array = np.array(image) != 0 if mask and image.mode == "P" else _pil_to_array(image)
        tensor = _array_to_channels_first(array, name, zero_one=mask, keep_uint8=keep_uint8)
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        tensor = _array_to_channels_first(image, name, zero_one=mask, keep_uint8=keep_uint8)
    else:
        raise ValueError(f"{name} must be a path, PIL image, numpy array or torch tensor, got {type(image).__name__}")
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0:
        raise ValueError(f"{name} is empty: size {tuple(tensor.shape[-2:])}")
    return tensor


def to_rgb(image, keep_uint8: bool = False) -> torch.Tensor:
    """Image-like -> (3, H, W) in [0, 1]: grayscale replicated, alpha dropped.

    With ``keep_uint8``, an 8-bit image stays uint8 (v meaning v / 255) and is not copied again: a (3, H, W) view
    (channels of an (H, W, 3) array, a grayscale channel repeated by stride 0)."""
    tensor = to_tensor(image, "image", keep_uint8=keep_uint8)
    if tensor.dtype == torch.uint8:
        return tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor[:3]
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1).contiguous()
    return tensor[:3].contiguous()


def to_mask(mask, keep_uint8: bool = False) -> torch.Tensor:
    """Mask-like -> (1, H, W) in [0, 1] (soft values kept), 1 = the region to harmonize.

    An integer mask whose values are all 0 or 1 is a 0/1 mask (not 0 and 1/255); a palette (mode "P") mask is 1
    wherever its index is not 0. An RGB mask is averaged over its channels. An RGBA mask is its alpha channel where
    that has any transparency (a cut-out: opaque on the object), else the average of its RGB channels.
    With ``keep_uint8``, a mask with one 8-bit channel (or that alpha) comes back as uint8 (1, H, W), 255 = 1; one
    averaged over channels, or not 8-bit, as float32.
    """
    tensor = to_tensor(mask, "mask", mask=True, keep_uint8=keep_uint8)
    if tensor.shape[0] == 4:
        opaque = 255 if tensor.dtype == torch.uint8 else 1
        tensor = tensor[3:] if bool((tensor[3] < opaque).any()) else tensor[:3]
    if tensor.dtype == torch.uint8:
        if tensor.shape[0] == 1:
            return tensor
        tensor = tensor.float() / 255.0  # (the float path's values: an average of 8-bit levels is not one)
    return tensor.mean(dim=0, keepdim=True)


def size_dict(size) -> dict[str, int]:
    """A working size given as an int (square), (height, width) or {"height", "width"} -> {"height", "width"}."""
    if isinstance(size, int):
        height = width = size
    elif isinstance(size, dict) and set(size) == {"height", "width"}:
        height, width = size["height"], size["width"]
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        height, width = size
    else:
        raise ValueError(f"size must be an int, (height, width) or {{'height': h, 'width': w}}, got {size!r}")
    if int(height) < MIN_WORKING_SIZE or int(width) < MIN_WORKING_SIZE:
        raise ValueError(f"size must be at least {MIN_WORKING_SIZE} pixels a side, got {size!r}")
    return {"height": int(height), "width": int(width)}


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of (C, H, W) or (B, C, H, W) to (height, width); no-op when already that size."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    batched = tensor if tensor.ndim == 4 else tensor[None]
    resized = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized if tensor.ndim == 4 else resized[0]


class SwinIHImageProcessor(BaseImageProcessor):
    r"""Builds `pixel_values` (B, 4, H, W) = [composite RGB in [0, 1], mask in [0, 1]] from images and masks.

    Args:
        do_resize (`bool`, defaults to `True`): resize every pair to `size`; otherwise keep each image's size
            (then a batch must share one size).
        size (`dict`, defaults to `{"height": 256, "width": 256}`): the model's working size; an int (square) or
            (height, width) is accepted too. At least `MIN_WORKING_SIZE` (8) pixels a side.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, do_resize: bool = True, size: dict[str, int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = size_dict(size) if size is not None else {"height": 256, "width": 256}

    def __call__(self, images, masks=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, masks, **kwargs)

    def preprocess(
        self,
        images,
        masks=None,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            images: one image or a list (paths, PIL, numpy (H, W[, C]), torch (C, H, W)); RGB, RGBA or grayscale.
            masks: one mask per image, same size as its image; bool / uint8 / uint16 / float, 1, 3 or 4 channels; a
                0/1 integer mask or a palette mask too (see `to_mask`).
        Returns:
            `BatchFeature` with `pixel_values` (B, 4, H, W) float32 and `original_sizes` (B, 2) int64 (height, width).
        Raises:
            ValueError: no mask, a different number of images and masks, an image and its mask of different sizes,
            empty or unreadable images, unsupported ranks or dtypes.
        """
        if masks is None:
            raise ValueError("a mask is required for every image (1 = the region to harmonize)")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        if kwargs:
            logger.warning(f"SwinIHImageProcessor ignores these arguments: {sorted(kwargs)}")
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else size_dict(size)
        if is_batch(images):
            images = list(images)
            masks = split_masks(masks, len(images))
        else:
            images, masks = [images], list(masks) if is_batch(masks) else [masks]
        if len(images) != len(masks):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks; pass one mask per image")
        if not images:
            raise ValueError("no images given")

        pixel_values, original_sizes = [], []
        for index, (image, mask) in enumerate(zip(images, masks)):
            rgb, alpha = to_rgb(image), to_mask(mask)
            if rgb.shape[-2:] != alpha.shape[-2:]:
                raise ValueError(
                    f"image {index} has size {tuple(rgb.shape[-2:])} (H, W) but its mask has {tuple(alpha.shape[-2:])}"
                )
            original_sizes.append(tuple(rgb.shape[-2:]))
            pair = torch.cat([rgb, alpha])
            pixel_values.append(resize(pair, (size["height"], size["width"])) if do_resize else pair)
        if len({tuple(p.shape) for p in pixel_values}) > 1:
            raise ValueError(
                "images of different sizes cannot be batched with do_resize=False; pass them one at a time"
            )
        return BatchFeature(
            {"pixel_values": torch.stack(pixel_values), "original_sizes": torch.tensor(original_sizes)},
            tensor_type=return_tensors,
        )

    def post_process_harmonization(
        self, outputs, target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None, output_type: str = "pil"
    ) -> list:
        """Model outputs -> one image per sample, resized to `target_sizes` (height, width) when given.

        Args:
            outputs: a `HarmonizationOutput` (or anything with `.harmonized`) or a tensor (B, 3, h, w) in [0, 1].
            output_type: `"pil"` (RGB uint8 images) or `"pt"` (float tensors (3, H, W) in [0, 1]).
        Raises:
            ValueError: a prediction with NaN or infinite values (e.g. corrupt weights), which would otherwise
            become black pixels.
        """
        harmonized = outputs if isinstance(outputs, torch.Tensor) else outputs.harmonized
        check_finite_prediction(harmonized)
        if target_sizes is not None and len(target_sizes) != len(harmonized):
            raise ValueError(f"got {len(target_sizes)} target sizes for {len(harmonized)} outputs")
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        results = []
        for index, image in enumerate(harmonized.detach().float().cpu()):
            if target_sizes is not None:
                image = resize(image, tuple(int(s) for s in target_sizes[index])).clamp(0, 1)
            results.append(to_pil(image) if output_type == "pil" else image)
        return results


def check_finite_prediction(harmonized: torch.Tensor) -> None:
    """`ValueError` naming the samples of a (B, 3, H, W) prediction that hold NaN or infinite values."""
    bad = (~harmonized.detach().isfinite()).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"the model's prediction is not finite (NaN or inf) for sample(s) {bad} of {len(harmonized)}: its "
            "weights are probably corrupt or diverged"
        )


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, H, W) float in [0, 1] -> RGB / L PIL image, rounded to uint8."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def is_batch(value) -> bool:
    """A list / tuple of images or masks, or a 4-D array / tensor (B, ...)."""
    return isinstance(value, (list, tuple)) or (isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 4)


def split_masks(masks, count: int) -> list:
    """Masks for a batch of `count` images: a list, a 4-D batch, or a 3-D (B, H, W) array / tensor."""
    if isinstance(masks, (np.ndarray, torch.Tensor)) and masks.ndim == 3 and masks.shape[0] == count:
        return list(masks)
    if not is_batch(masks):
        raise ValueError(f"got {count} images but a single mask; pass one mask per image (a list)")
    return list(masks)


__all__ = ["SwinIHImageProcessor"]
