"""The LEMaRT composer as a ``datasets`` transform: photos in, (composite + mask, original, mask) tensors out.

Map-style datasets (imagefolder, hub datasets, ``load_image_folder``)::

    transform = lemart_transform(processor, LEMaRTComposer(), seed=0)
    train_dataset = dataset.with_transform(transform)      # composites are made anew at every access

A ``datasets`` image column is decoded before the transform sees it, so one corrupt file in an imagefolder
would fail there. Leave the decoding to the transform, which drops unreadable rows with a counted warning::

    dataset = dataset.cast_column("image", datasets.Image(decode=False))

Streaming ``IterableDataset`` (the same callable, through a batched ``map``)::

    stream = stream.map(transform, batched=True, batch_size=64, remove_columns=stream.column_names)

To composite on the GPU instead, pass ``composer=None``: the transform then only decodes and crops, returning
``{"images": (B, 3, H, W)}``, and the training loop calls the composer on the device.
"""

import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from .composer import LEMaRTComposer
from .image_loading import UNREADABLE_IMAGE_ERRORS, SkippedImageWarning, to_rgb_image


def lemart_transform(
    processor: Any = None,
    composer: LEMaRTComposer | None = None,
    image_column: str = "image",
    resolution: int | tuple[int, int] | None = None,
    seed: int | None = None,
    random_crop: bool = True,
    crop_scale: tuple[float, float] = (0.35, 1.0),
) -> "LEMaRTTransform":
    """Make the batch transform for ``Dataset.with_transform`` / ``IterableDataset.map(batched=True)``.

    Args:
        processor: anything with a ``size`` dict holding ``height`` and ``width`` (the image processor's working
            size); only that is read. Not needed when ``resolution`` is given.
        composer: the ``LEMaRTComposer`` to apply; ``None`` to return the cropped photos only.
        image_column: column holding the photos (PIL images, paths, ``{"bytes", "path"}`` dicts or arrays).
        resolution: working size override, an int (square) or (height, width).
        seed: seed of the crops and composites; ``None`` draws one from torch's global RNG (which a torch
            ``DataLoader`` seeds differently in every worker). With a seed, each ``DataLoader`` worker mixes in
            its worker seed (``get_worker_info().seed``: the loader's base seed, drawn anew at every epoch from its
            ``generator`` or torch's global RNG, plus the worker id), so workers never repeat each other and
            workers started anew each epoch (``persistent_workers=False``, the default) make new composites; a
            loader with a seeded ``generator`` gives the same sequence run after run.
        random_crop: crop a random window (see ``crop_scale``); ``False``: the largest centred window.
        crop_scale: range of the crop's area as a fraction of the largest window of the working aspect ratio
            that fits in the photo; the window keeps the working aspect ratio, so nothing is stretched.

    Returns:
        A ``LEMaRTTransform``.
    """
    if resolution is None:
        if processor is None:
            raise ValueError("Pass a processor (with a `size` dict) or a `resolution`.")
        size = getattr(processor, "size", None)
        if not isinstance(size, dict) or "height" not in size or "width" not in size:
            raise ValueError(f"Expected processor.size to be a dict with 'height' and 'width', got {size!r}.")
        resolution = (int(size["height"]), int(size["width"]))
    elif isinstance(resolution, int):
        resolution = (resolution, resolution)
    if len(resolution) != 2 or min(resolution) < 1:
        raise ValueError(f"resolution must be a positive int or (height, width), got {resolution!r}.")
    return LEMaRTTransform(composer, tuple(resolution), image_column, seed, random_crop, crop_scale)


class LEMaRTTransform:
    """Batch transform: decode to RGB, crop and resize to the working size, stack, composite.

    Called with a batch dict (column -> list of rows), it returns ``{"pixel_values" (B, 4, H, W), "labels"
    (B, 3, H, W), "mask" (B, 1, H, W)}`` float32 tensors (see ``LEMaRTComposer``), or ``{"images" (B, 3, H, W)}``
    without a composer. Rows whose image cannot be decoded are dropped, counted in ``num_skipped`` and reported
    by a ``SkippedImageWarning``; so a batch may come back shorter than it went in (fine for batched access,
    ``map`` and ``DataLoader``; a single-row ``dataset[i]`` of an unreadable file then fails).
    """

    def __init__(
        self,
        composer: LEMaRTComposer | None,
        resolution: tuple[int, int],
        image_column: str = "image",
        seed: int | None = None,
        random_crop: bool = True,
        crop_scale: tuple[float, float] = (0.35, 1.0),
    ):
        if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}.")
        self.composer = composer
        self.resolution = resolution
        self.image_column = image_column
        self.seed = seed
        self.random_crop = random_crop
        self.crop_scale = crop_scale
        self.num_skipped = 0
        self._generator: torch.Generator | None = None
        self._generator_owner: tuple[int, int | None] | None = None

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        if self.image_column not in batch:
            raise ValueError(
                f"No column {self.image_column!r} in the batch (columns: {list(batch)}); set image_column."
            )
        generator = self._process_generator()
        photos = []
        for item in batch[self.image_column]:
            try:
                photos.append(to_rgb_image(item))
            except UNREADABLE_IMAGE_ERRORS as error:
                self.num_skipped += 1
                warnings.warn(
                    f"Dropped an unreadable image ({type(error).__name__}: {error}); {self.num_skipped} dropped "
                    "by this transform so far. Use load_image_folder(..., verify=True) to leave them out up front.",
                    SkippedImageWarning,
                    stacklevel=2,
                )
        images = self._crop_and_stack(photos, generator)
        if self.composer is None:
            return {"images": images}
        return self.composer(images, generator=generator)

    def _crop_and_stack(self, photos: list[Image.Image], generator: torch.Generator) -> torch.Tensor:
        """(B, 3, H, W) float32 in [0, 1]: a window of each photo, resized (antialiased bilinear) to working size."""
        height, width = self.resolution
        uniforms = torch.rand(len(photos), 3, generator=generator).tolist()
        crops = np.empty((len(photos), height, width, 3), dtype=np.uint8)
        for index, (photo, (scale_draw, x_draw, y_draw)) in enumerate(zip(photos, uniforms, strict=True)):
            # Largest window with the working aspect ratio, then a random fraction of its area.
            window_width = min(photo.width, photo.height * width / height)
            window_height = window_width * height / width
            if self.random_crop:
                scale = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * scale_draw
                window_width, window_height = window_width * scale**0.5, window_height * scale**0.5
            else:
                x_draw = y_draw = 0.5
            left = (photo.width - window_width) * x_draw
            top = (photo.height - window_height) * y_draw
            box = (left, top, left + window_width, top + window_height)
            crops[index] = np.asarray(photo.resize((width, height), Image.Resampling.BILINEAR, box=box))
        return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().float().div_(255)

    def _process_generator(self) -> torch.Generator:
        """This process's (and DataLoader worker's) generator, made on first use there."""
        worker = torch.utils.data.get_worker_info()
        owner = (os.getpid(), worker.id if worker is not None else None)
        if self._generator_owner != owner:
            if self.seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            else:
                # worker.seed, not worker.id: workers re-created at every epoch must not replay the last epoch.
                stream = [self.seed, 0] if worker is None else [self.seed, 1, worker.seed]
                seed = int(np.random.SeedSequence(stream).generate_state(1, dtype=np.uint64)[0] >> 1)
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_owner = owner
        return self._generator

    def __getstate__(self) -> dict:
        # Generators are per process: a copy sent to a worker makes its own on first use.
        return {**self.__dict__, "_generator": None, "_generator_owner": None}
