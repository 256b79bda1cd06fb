"""Unlabeled photos for LEMaRT pre-training: image folders or `datasets` image columns -> fixed-size crops.

The dataset only decodes, crops and flips (on DataLoader workers); the LEMaRT composites are made later, batched,
by `lemart_hf.lemart.LEMaRTComposer`. Every random choice of a sample comes from a generator keyed by ``(seed, key)``,
where the key ``epoch * len(dataset) + position`` comes from `EpochShuffleSampler`. So a sample is the same whichever
worker decodes it and whatever was loaded before it: a run resumed mid-epoch sees exactly the crops the uninterrupted
run saw. Streamed shards of photos: `lemart_hf.data.streaming`.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..lemart.image_loading import IMAGE_EXTENSIONS, UNREADABLE_IMAGE_ERRORS, SkippedImageWarning, to_rgb_image

# Distinguishes the crop stream from other streams mixed from the same (seed, number) pairs.
_CROP_STREAM = 0x5EED_C409


def list_images(folder: str | os.PathLike, recursive: bool = True, verify: bool = True) -> list[str]:
    """Sorted paths of the image files (by extension, `IMAGE_EXTENSIONS`) under ``folder``.

    With ``verify``, every file is decoded once (JPEGs at 1/8 scale, which still reads all the data) and the
    unreadable ones are left out with one `SkippedImageWarning`, so a corrupt file cannot stop a long run.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: it holds no (readable) image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} is not a directory")
    pattern = "**/*" if recursive else "*"
    paths = sorted(str(p) for p in root.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if verify:
        readable, failures = [], []
        for path in paths:
            try:
                with Image.open(path) as image:
                    image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
                    image.load()
                readable.append(path)
            except UNREADABLE_IMAGE_ERRORS as error:
                failures.append(f"{os.path.relpath(path, root)} ({type(error).__name__}: {error})")
        if failures:
            warnings.warn(
                f"skipped {len(failures)} of {len(paths)} unreadable image files under {str(root)!r}: "
                + "; ".join(failures[:5])
                + (" ..." if len(failures) > 5 else ""),
                SkippedImageWarning,
                stacklevel=2,
            )
        paths = readable
    if not paths:
        raise ValueError(f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(folder)!r}")
    return paths


def keyed_generator(seed: int, key: int, stream: int = _CROP_STREAM) -> torch.Generator:
    """A CPU generator for sample ``key`` of a run seeded ``seed`` (mixed by NumPy's SeedSequence)."""
    mixed = int(np.random.SeedSequence([seed, key, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(mixed)


def open_image(source) -> Image.Image:
    """A path, PIL image or undecoded `datasets.Image` value (``{"bytes", "path"}``) -> an (unloaded) PIL image."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return Image.open(io.BytesIO(source["bytes"]))
        source = source["path"]
    return Image.open(source)


def square_crop_box(
    width: int, height: int, scale: tuple[float, float], generator: torch.Generator | None
) -> tuple[int, int, int]:
    """A random square (left, top, side) covering a fraction in ``scale`` of the largest square, anywhere inside."""
    short = min(width, height)
    if generator is None:  # the centred largest square
        return (width - short) // 2, (height - short) // 2, short
    area = float(torch.empty(()).uniform_(scale[0], scale[1], generator=generator))
    side = max(1, min(short, round(short * math.sqrt(area))))
    left = int(torch.randint(0, width - side + 1, (), generator=generator))
    top = int(torch.randint(0, height - side + 1, (), generator=generator))
    return left, top, side


def load_crop(
    source,
    resolution: int,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    hflip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decode an image and return a square crop resized to ``resolution``: uint8 tensor (3, R, R).

    With a generator: a random square crop (area fraction in ``scale`` of the largest square) and, with
    ``hflip``, a coin-flip mirror. Without: the centred largest square (validation). Resizing is PIL's antialiased
    bilinear. Big JPEGs are decoded at a reduced size (PIL's ``draft``) when the crop is shrunk 2x or more.
    """
    image = open_image(source)
    try:
        return _crop_opened(image, resolution, scale, hflip, generator)
    finally:
        if not isinstance(source, Image.Image):
            image.close()


def _crop_opened(image: Image.Image, resolution: int, scale, hflip: bool, generator) -> torch.Tensor:
    upright = image.getexif().get(0x0112, 1) in (0, 1)
    if not upright:  # EXIF rotation: crop the photo as it is meant to be seen (decoded in full)
        image = ImageOps.exif_transpose(image)
    left, top, side = square_crop_box(*image.size, scale, generator)
    flip = bool(hflip and generator is not None and torch.rand((), generator=generator) < 0.5)
    if upright and image.format == "JPEG" and side >= 2 * resolution:
        full_width = image.size[0]
        image.draft("RGB", (max(1, image.size[0] * resolution // side), max(1, image.size[1] * resolution // side)))
        factor = image.size[0] / full_width
        left, top, side = (round(v * factor) for v in (left, top, side))
        left, top, side = _refit_box(image.size, left, top, side)
    # RGB / L / P convert directly; other modes (16-bit, float, transparency, CMYK) as lemart_hf.lemart does.
    image = (
        image.convert("RGB")
        if image.mode in ("RGB", "L", "P") and "transparency" not in image.info
        else to_rgb_image(image)
    )
    crop = image.resize((resolution, resolution), Image.BILINEAR, box=(left, top, left + side, top + side))
    if flip:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)


def _refit_box(size: tuple[int, int], left: int, top: int, side: int) -> tuple[int, int, int]:
    width, height = size
    side = max(1, min(side, width, height))
    return min(max(0, left), width - side), min(max(0, top), height - side), side


class PhotoDataset(torch.utils.data.Dataset):
    """Photos -> ``{"pixel_values": uint8 (3, R, R), "key": int}``: a random square crop (and flip) per sample.

    Args:
        images: image paths, or a `datasets.Dataset` whose ``image_column`` holds images (it is read undecoded so
            the decoding happens here, with JPEG draft mode).
        resolution: side R of the output.
        seed: seeds every sample's generator together with its key.
        train: random crops and flips when True; the centred largest square when False (validation).
        crop_scale: area fraction range of the random square crop, relative to the largest square.
        hflip: mirror half of the training crops.
        image_column: the image column of a `datasets.Dataset`.

    Indexing takes a key (any non-negative int): the photo is ``key % len(self)``, and the key seeds the crop. A
    plain index is a valid key, so ``dataset[i]`` works as usual. In training, a photo that cannot be decoded (a
    corrupt file in a dataset nobody verified) is replaced by the next readable one, with a `SkippedImageWarning`,
    so the run neither stops nor loses its exact order; validation raises a `ValueError` naming it.
    """

    # Training: how many following photos to try before giving up on a key.
    MAX_REPLACEMENTS = 16

    def __init__(
        self,
        images: Sequence[str] | datasets.Dataset,  # noqa: F821
        resolution: int,
        *,
        seed: int = 0,
        train: bool = True,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        image_column: str = "image",
    ):
        if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        if _is_hf_dataset(images):
            import datasets

            if image_column not in images.column_names:
                raise ValueError(f"image column {image_column!r} not in the dataset's columns {images.column_names}")
            images = images.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        elif len(images) == 0:
            raise ValueError("no images given")
        self.images = images
        self.resolution = resolution
        self.seed = seed
        self.train = train
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.image_column = image_column

    def __len__(self) -> int:
        return len(self.images)

    def source(self, index: int):
        """The path or undecoded `datasets.Image` value of photo ``index``."""
        item = self.images[index]
        return item[self.image_column] if isinstance(item, dict) else item

    def __getitem__(self, key: int) -> dict:
        key = int(key)
        attempts = min(len(self), self.MAX_REPLACEMENTS) if self.train else 1
        for offset in range(attempts):
            index = (key + offset) % len(self)
            source = self.source(index)
            generator = keyed_generator(self.seed, key) if self.train else None
            try:
                pixels = load_crop(
                    source, self.resolution, scale=self.crop_scale, hflip=self.hflip, generator=generator
                )
            except UNREADABLE_IMAGE_ERRORS as error:
                message = f"cannot read photo {index} ({_where(source)}): {type(error).__name__}: {error}"
                if offset + 1 == attempts:
                    raise ValueError(message) from error
                warnings.warn(
                    f"{message}; using photo {(index + 1) % len(self)} instead", SkippedImageWarning, stacklevel=2
                )
                continue
            return {"pixel_values": pixels, "key": key}


def _where(source) -> str:
    """A photo's path for messages, where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return (source.get("path") if isinstance(source, dict) else None) or "?"


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """Yields the keys ``epoch * len(self) + p`` for a permutation ``p`` of ``range(num_items * repeats)``.

    The permutation is drawn from ``(seed, epoch)`` only, so any epoch can be replayed from its number (no state
    to save). ``repeats`` makes one epoch visit every item several times (small folders, big batches); a
    `PhotoDataset` maps a key back to its photo with ``key % len(dataset)``.
    """

    def __init__(self, num_items: int, *, seed: int = 0, repeats: int = 1, shuffle: bool = True):
        if num_items < 1 or repeats < 1:
            raise ValueError(f"num_items and repeats must be >= 1, got {num_items} and {repeats}")
        self.num_items = num_items
        self.seed = seed
        self.repeats = repeats
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items * self.repeats

    def __iter__(self):
        length = len(self)
        if self.shuffle:
            order = torch.randperm(length, generator=keyed_generator(self.seed, self.epoch, stream=0x5A3B1E))
        else:
            order = torch.arange(length)
        base = self.epoch * length
        return iter((base + order).tolist())


def collate_photos(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack `PhotoDataset` samples: ``{"pixel_values": uint8 (B, 3, R, R), "key": int64 (B,)}``."""
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "key": torch.tensor([s["key"] for s in samples], dtype=torch.long),
    }


def _is_hf_dataset(obj) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "column_names")


__all__ = [
    "IMAGE_EXTENSIONS",
    "EpochShuffleSampler",
    "PhotoDataset",
    "collate_photos",
    "keyed_generator",
    "list_images",
    "load_crop",
    "open_image",
    "square_crop_box",
]
