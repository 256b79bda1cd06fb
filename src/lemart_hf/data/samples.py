"""The embedded default photo set: real photographs shipped inside the scikit-image wheel (the ``[dev]`` extra).

LEMaRT needs nothing but real photos, so `examples/run_pretrain.py` without ``--train_dir`` / ``--dataset_name``
trains on these and works offline in minutes. They are read from the installed package's ``data/`` folder
(found without importing scikit-image and without any download); grayscale and synthetic images of that folder
(camera, brick, coins, text, color wheel, logo, phantom, chessboards, ...) are left out.

Nine photos are far too few for a useful model: this set is for smoke runs and the demo, not for experiments.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: RGB photographs in ``skimage/data`` (file name -> what it shows).
SAMPLE_PHOTOS: dict[str, str] = {
    "astronaut.png": "astronaut Eileen Collins (NASA portrait)",
    "chelsea.png": "Chelsea the cat",
    "coffee.png": "a cup of coffee",
    "hubble_deep_field.jpg": "Hubble deep field (NASA)",
    "ihc.png": "immunohistochemistry micrograph",
    "motorcycle_left.png": "motorcycle, left view of a stereo pair (Middlebury)",
    "motorcycle_right.png": "motorcycle, right view of a stereo pair (Middlebury)",
    "retina.jpg": "human retina (fundus photograph)",
    "rocket.jpg": "Falcon 9 rocket launch (SpaceX)",
}

#: The photo held out for validation by default: a cat is unlike every training photo (and nice to look at).
SAMPLE_VALIDATION_PHOTOS: tuple[str, ...] = ("chelsea.png",)


def sample_photos_dir() -> Path:
    """The ``data`` folder of the installed scikit-image package.

    Raises:
        ModuleNotFoundError: scikit-image is not installed (install the ``[dev]`` extra).
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded default photos come from scikit-image, which is not installed: "
            "`pip install -e '.[dev]'` (or `pip install scikit-image`), or pass --train_dir / --dataset_name"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_photo_paths(split: str = "all") -> list[str]:
    """Absolute paths of the embedded photos, sorted by name.

    Args:
        split: ``"all"``, ``"train"`` (all but `SAMPLE_VALIDATION_PHOTOS`) or ``"validation"``.
    Raises:
        ModuleNotFoundError: scikit-image is not installed.
        FileNotFoundError: its wheel lacks the photos (a stripped install).
        ValueError: an unknown split.
    """
    if split not in ("all", "train", "validation"):
        raise ValueError(f"split must be 'all', 'train' or 'validation', got {split!r}")
    folder = sample_photos_dir()
    missing = [name for name in SAMPLE_PHOTOS if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image's data folder {str(folder)!r} lacks the photos {missing}")
    names = sorted(SAMPLE_PHOTOS)
    if split == "train":
        names = [n for n in names if n not in SAMPLE_VALIDATION_PHOTOS]
    elif split == "validation":
        names = [n for n in names if n in SAMPLE_VALIDATION_PHOTOS]
    return [str(folder / name) for name in names]


__all__ = ["SAMPLE_PHOTOS", "SAMPLE_VALIDATION_PHOTOS", "sample_photo_paths", "sample_photos_dir"]
