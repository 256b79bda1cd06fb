"""Sample grids (composite | mask | prediction | original, a row per example): made (`make_sample_grid`), sent to
the trackers (`log_sample_grid`) and saved under ``samples/`` (`save_sample_grid`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def make_sample_grid(
    composite: torch.Tensor,
    mask: torch.Tensor,
    prediction: torch.Tensor,
    original: torch.Tensor,
    *,
    max_rows: int = 4,
    header: bool = True,
):
    """One PIL image: a row per example with the columns composite | mask | prediction | original.

    Args:
        composite, prediction, original: (B, 3, H, W) in [0, 1].
        mask: (B, 1, H, W) in [0, 1].
        max_rows: the first ``max_rows`` examples.
        header: a strip naming the columns (when the tiles are at least 48 pixels wide).
    """
    from PIL import Image, ImageDraw

    rows = min(max_rows, composite.shape[0])
    tiles = [composite[:rows], mask[:rows].expand(-1, 3, -1, -1), prediction[:rows], original[:rows]]
    tiles = [t.detach().float().cpu().clamp(0, 1) for t in tiles]
    _, _, height, width = tiles[0].shape
    gap = 2
    grid = torch.ones(3, rows * height + (rows - 1) * gap, 4 * width + 3 * gap)
    for column, tile in enumerate(tiles):
        for row in range(rows):
            top, left = row * (height + gap), column * (width + gap)
            grid[:, top : top + height, left : left + width] = tile[row]
    image = Image.fromarray((grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    if not header or width < 48:
        return image
    strip = 14
    framed = Image.new("RGB", (image.width, image.height + strip), "white")
    framed.paste(image, (0, strip))
    draw = ImageDraw.Draw(framed)
    for column, label in enumerate(("composite", "mask", "prediction", "original")):
        draw.text((column * (width + gap) + 2, 1), label, fill=(0, 0, 0))
    return framed


def log_sample_grid(accelerator, grid, step: int, tag: str = "samples") -> None:
    """Send a grid (PIL image) to the trackers that take images (tensorboard, wandb); main process only."""
    array = np.asarray(grid)
    for tracker in accelerator.trackers:
        try:
            if tracker.name == "tensorboard":
                tracker.writer.add_image(tag, array, step, dataformats="HWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({tag: [array]}, step=step)
        except Exception as error:  # noqa: BLE001  (a tracker that cannot take images must not stop training)
            logger.warning("could not log images to %s: %s", tracker.name, error)


def save_sample_grid(grid, output_dir: str | os.PathLike, step: int) -> Path:
    folder = Path(output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.png"
    grid.save(path)
    return path
