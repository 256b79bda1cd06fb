"""Reading photo collections for LEMaRT: any PIL mode to 8-bit RGB, and folders with unreadable files skipped."""

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# What PIL raises for a file it cannot decode: unknown format, truncated or corrupt data, bad headers.
UNREADABLE_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class SkippedImageWarning(UserWarning):
    """Some images could not be read and were left out (the message says how many and which)."""


def to_rgb_image(image: Any) -> Image.Image:
    """Decode and convert one image to an 8-bit RGB PIL image.

    Accepts a PIL image, a path, a ``datasets`` image dict (``{"bytes": ..., "path": ...}``, what an ``Image``
    column gives with ``decode=False``) or a uint8 / uint16 / float-in-[0, 1] array (H, W) or (H, W, C).
    Applies the EXIF orientation; 16-bit and float greyscale are rescaled (not clipped) to 8 bits; images
    with transparency are composited onto white (as transformers' ``convert_rgb`` does); other modes (L, P,
    CMYK, YCbCr, ...) go through PIL's ``convert("RGB")``.

    Raises:
        One of ``UNREADABLE_IMAGE_ERRORS`` when the data cannot be decoded (PIL decodes lazily, so the full
        decode happens here).
    """
    opened_here = isinstance(image, (dict, str, os.PathLike))
    if isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    elif isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = _array_to_image(image)
    try:
        image.load()
    except UNREADABLE_IMAGE_ERRORS:
        if opened_here:
            image.close()  # a file that fails to decode would otherwise stay open
        raise
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return _array_to_image(np.asarray(image)).convert("RGB")
    if image.mode == "F":
        return _array_to_image(np.asarray(image, dtype=np.float32)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def load_image_folder(path: str | os.PathLike, image_column: str = "image", verify: bool = True):
    """A ``datasets.Dataset`` with one image column for every image file under ``path`` (recursively, sorted).

    Args:
        path: folder of photos; files are picked by extension (``IMAGE_EXTENSIONS``, any case).
        image_column: name of the column.
        verify: decode every file now and leave out those that cannot be read, with one
            ``SkippedImageWarning`` that counts them; the column is a decoded ``datasets.Image()``. With
            ``verify=False`` nothing is read now (for huge folders) and the column holds undecoded
            ``{"bytes", "path"}`` entries (``Image(decode=False)``), which ``lemart_transform`` decodes itself,
            dropping unreadable rows with a counted warning.

    Non-RGB files are kept: ``to_rgb_image`` (used by ``lemart_transform``) converts them.
    """
    import datasets

    root = Path(path)
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if verify:
        readable, failures = [], []
        for file in files:
            try:
                with Image.open(file) as image:
                    # JPEGs decode at 1/8 scale: still reads all the data (so truncation shows), 2x faster.
                    image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
                    image.load()
                readable.append(file)
            except UNREADABLE_IMAGE_ERRORS as error:
                failures.append(f"{Path(file).relative_to(root)} ({type(error).__name__}: {error})")
        if failures:
            warnings.warn(
                f"Skipped {len(failures)} of {len(files)} image files under {root} that could not be read: "
                + "; ".join(failures[:5])
                + (" ..." if len(failures) > 5 else ""),
                SkippedImageWarning,
                stacklevel=2,
            )
        files = readable
    dataset = datasets.Dataset.from_dict({image_column: files})
    return dataset.cast_column(image_column, datasets.Image(decode=verify))


def _array_to_image(array: np.ndarray) -> Image.Image:
    """uint8 as is; uint16 / 32-bit integer (16-bit data) / float in [0, 1] rescaled to uint8; (H, W, 1) squeezed."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    if np.issubdtype(array.dtype, np.integer):
        scaled = array.astype(np.float32) / 65535.0
    else:
        scaled = array.astype(np.float32)
    return Image.fromarray((np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
