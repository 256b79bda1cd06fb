"""Folders of composites to harmonize: ``NAME.<ext>`` with its mask ``NAME_mask.png`` beside it.

The layout of the CLI's folder mode, of galleries (`lemart_hf.gallery`), of the web demo's examples and of the real
composites shipped with the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..lemart.image_loading import IMAGE_EXTENSIONS

MASK_SUFFIX = "_mask"


def composite_paths(folder: str | os.PathLike) -> list[Path]:
    """The composites of ``folder``, sorted: its image files (by extension, `IMAGE_EXTENSIONS`) that are not masks."""
    return sorted(
        path
        for path in Path(folder).iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.stem.endswith(MASK_SUFFIX)
    )


def mask_path(composite: str | os.PathLike) -> Path:
    """Where the mask of ``composite`` is: ``NAME_mask.png`` beside ``NAME.<ext>``."""
    composite = Path(composite)
    return composite.with_name(f"{composite.stem}{MASK_SUFFIX}.png")


__all__ = ["MASK_SUFFIX", "composite_paths", "mask_path"]
