import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf.lemart import (
    LEMaRTComposer,
    SkippedImageWarning,
    lemart_transform,
    load_image_folder,
    to_rgb_image,
)

PROCESSOR = SimpleNamespace(size={"height": 48, "width": 48})


def _photo(width: int = 80, height: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Photos in assorted formats and modes, in nested folders, plus one truncated JPEG and a stray text file."""
    (tmp_path / "sub").mkdir()
    Image.fromarray(_photo(seed=0)).save(tmp_path / "rgb.jpg")
    Image.fromarray(_photo(seed=1)).save(tmp_path / "sub" / "rgb.png")
    Image.fromarray(_photo(seed=2)[:, :, 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([_photo(seed=3), np.full((60, 80), 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(_photo(seed=4)).convert("P").save(tmp_path / "palette.gif")
    Image.fromarray(_photo(seed=5)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((np.arange(60 * 80).reshape(60, 80) * 13).astype(np.uint16)).save(tmp_path / "deep.png")
    buffer = io.BytesIO()
    Image.fromarray(_photo(200, 150, seed=6)).save(buffer, format="JPEG")
    (tmp_path / "broken.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_to_rgb_image_converts_every_mode_to_8_bit_rgb(photo_folder):
    for name in ("rgb.jpg", "grey.png", "rgba.png", "palette.gif", "cmyk.jpg", "deep.png"):
        image = to_rgb_image(str(photo_folder / name))
        assert image.mode == "RGB" and image.size == (80, 60), name
    # 16-bit values are rescaled, not clipped at 255.
    deep = np.asarray(to_rgb_image(photo_folder / "deep.png"))
    assert deep.max() > 200 and len(np.unique(deep)) > 100
    # Transparency is composited onto white: half-transparent pixels are lighter than the colour under them.
    rgba = np.asarray(to_rgb_image(photo_folder / "rgba.png")).astype(int)
    assert (rgba >= _photo(seed=3).astype(int) - 1).all()


def test_to_rgb_image_accepts_dicts_and_arrays(photo_folder):
    data = (photo_folder / "rgb.jpg").read_bytes()
    assert to_rgb_image({"bytes": data, "path": None}).size == (80, 60)
    assert to_rgb_image({"bytes": None, "path": str(photo_folder / "grey.png")}).mode == "RGB"
    assert to_rgb_image(np.random.rand(10, 12).astype(np.float32)).size == (12, 10)
    with pytest.raises(OSError):
        to_rgb_image(photo_folder / "broken.jpg")


def test_load_image_folder_skips_unreadable_files_with_one_counted_warning(photo_folder):
    with pytest.warns(SkippedImageWarning, match=r"Skipped 1 of 8 image files.*broken\.jpg") as record:
        dataset = load_image_folder(photo_folder)
    assert len(record) == 1
    assert len(dataset) == 7 and "notes.txt" not in str(dataset.features)
    batch = dataset.with_transform(lemart_transform(PROCESSOR, LEMaRTComposer(), seed=0))[:]
    assert batch["pixel_values"].shape == (7, 4, 48, 48)
    assert batch["labels"].shape == (7, 3, 48, 48) and batch["mask"].shape == (7, 1, 48, 48)


def test_lazy_folder_drops_unreadable_rows_at_access_time(photo_folder):
    dataset = load_image_folder(photo_folder, verify=False)
    assert len(dataset) == 8
    transform = lemart_transform(PROCESSOR, LEMaRTComposer(), seed=0)
    with pytest.warns(SkippedImageWarning, match="1 dropped"):
        batch = dataset.with_transform(transform)[:]
    assert batch["pixel_values"].shape[0] == 7 and transform.num_skipped == 1


def test_single_items_and_a_dataloader(photo_folder):
    with pytest.warns(SkippedImageWarning):
        dataset = load_image_folder(photo_folder).with_transform(lemart_transform(PROCESSOR, LEMaRTComposer(), seed=0))
    item = dataset[0]
    assert item["pixel_values"].shape == (4, 48, 48) and item["pixel_values"].dtype == torch.float32
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 4, 48, 48)


def test_imagefolder_builder_dataset(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(_photo(seed=index)).save(folder / f"{index}.jpg")
    import datasets

    cache_dir = str(tmp_path / "cache")
    dataset = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train", cache_dir=cache_dir)
    batch = dataset.with_transform(lemart_transform(resolution=(32, 40), composer=LEMaRTComposer(), seed=0))[:4]
    assert batch["pixel_values"].shape == (4, 4, 32, 40)


def test_streaming_iterable_dataset_through_batched_map(photo_folder):
    with pytest.warns(SkippedImageWarning):
        dataset = load_image_folder(photo_folder)
    stream = dataset.to_iterable_dataset(num_shards=2)
    transform = lemart_transform(PROCESSOR, LEMaRTComposer(), seed=0)
    stream = stream.map(transform, batched=True, batch_size=4, remove_columns=stream.column_names)
    rows = list(stream)
    assert len(rows) == 7
    assert rows[0]["pixel_values"].shape == (4, 48, 48) and rows[0]["mask"].shape == (1, 48, 48)
    batch = next(iter(torch.utils.data.DataLoader(stream, batch_size=3)))
    assert batch["pixel_values"].shape == (3, 4, 48, 48)


def test_same_seed_same_batches_and_crops_cover_the_working_size(photo_folder):
    with pytest.warns(SkippedImageWarning):
        dataset = load_image_folder(photo_folder)
    first = dataset.with_transform(lemart_transform(PROCESSOR, LEMaRTComposer(), seed=3))[:]
    again = dataset.with_transform(lemart_transform(PROCESSOR, LEMaRTComposer(), seed=3))[:]
    other = dataset.with_transform(lemart_transform(PROCESSOR, LEMaRTComposer(), seed=4))[:]
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    assert not torch.equal(first["pixel_values"], other["pixel_values"])
    centred = dataset.with_transform(lemart_transform(PROCESSOR, None, random_crop=False, seed=3))[:]
    assert set(centred) == {"images"} and centred["images"].shape == (7, 3, 48, 48)


def test_working_size_comes_from_the_processor_or_the_override():
    assert lemart_transform(PROCESSOR, None).resolution == (48, 48)
    assert lemart_transform(PROCESSOR, None, resolution=64).resolution == (64, 64)
    assert lemart_transform(None, None, resolution=(32, 48)).resolution == (32, 48)
    with pytest.raises(ValueError, match="height"):
        lemart_transform(SimpleNamespace(size={"shortest_edge": 224}), None)
    with pytest.raises(ValueError, match="processor"):
        lemart_transform()


def test_the_swinih_image_processor_gives_the_working_size():
    try:
        from lemart_hf.models.swinih import SwinIHImageProcessor
    except ImportError:
        pytest.skip("SwinIHImageProcessor is not available")
    assert lemart_transform(SwinIHImageProcessor(), None).resolution == (256, 256)


def test_shared_photos(shared_data):
    if not (shared_data / "photos").is_dir():
        pytest.skip("../shared/data/photos is not present")
    dataset = load_image_folder(shared_data / "photos", verify=False)
    assert len(dataset) > 100
    transform = lemart_transform(resolution=64, composer=LEMaRTComposer(), seed=0)
    batch = dataset.select(range(8)).with_transform(transform)[:]
    assert batch["pixel_values"].shape == (8, 4, 64, 64) and transform.num_skipped == 0
    mask = batch["mask"].bool().expand(-1, 3, -1, -1)
    assert torch.equal(batch["pixel_values"][:, :3][~mask], batch["labels"][~mask])


def test_transform_survives_pickling_for_worker_processes():
    import pickle

    transform = lemart_transform(PROCESSOR, LEMaRTComposer(), seed=0)
    transform({"image": [Image.fromarray(_photo())]})
    restored = pickle.loads(pickle.dumps(transform))
    assert restored({"image": [Image.fromarray(_photo())]})["pixel_values"].shape == (1, 4, 48, 48)
