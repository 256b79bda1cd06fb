"""The embedded default photo set: real RGB photographs from the scikit-image wheel, no network."""

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from lemart_hf.data import samples
from lemart_hf.data.samples import SAMPLE_PHOTOS, SAMPLE_VALIDATION_PHOTOS, sample_photo_paths

pytest.importorskip("skimage")


def test_the_photos_are_real_rgb_photographs_on_disk():
    paths = sample_photo_paths()
    assert [Path(p).name for p in paths] == sorted(SAMPLE_PHOTOS)
    for path in paths:
        with Image.open(path) as image:
            assert image.mode == "RGB", path  # grayscale / RGBA / palette images of skimage are left out
            assert min(image.size) >= 256, path
            # Photographs, not flat synthetic drawings: many distinct colours.
            colours = image.convert("RGB").reduce(4).getcolors(maxcolors=1 << 20)
            assert colours is None or len(colours) > 2000, path


def test_train_and_validation_split_the_set():
    train, validation = sample_photo_paths("train"), sample_photo_paths("validation")
    assert [Path(p).name for p in validation] == list(SAMPLE_VALIDATION_PHOTOS)
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sample_photo_paths()
    with pytest.raises(ValueError, match="split"):
        sample_photo_paths("test")


def test_found_without_importing_or_downloading(monkeypatch):
    # The folder comes from the package spec; scikit-image's data fetcher (pooch, network) is never used.
    folder = samples.sample_photos_dir()
    assert folder == Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"


def test_missing_scikit_image_is_explained(monkeypatch):
    monkeypatch.setattr(samples.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"\[dev\]"):
        sample_photo_paths()
