"""lemart_hf.data.shards and lemart_hf.data.streaming: photo folders packed into Parquet shards, streamed split by
process and worker, block-shuffled, and resumed exactly from a saved position."""

from __future__ import annotations

import json
import warnings
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from lemart_hf.data import DataFileError
from lemart_hf.data.shards import pack_photo_shards
from lemart_hf.data.streaming import StreamingPhotos, StreamLoader, photo_identity

datasets = pytest.importorskip("datasets")


def make_square_photos(folder: Path, count: int) -> Path:
    """``count`` square photos of distinct colours (jpg and png): a full, unflipped crop tells them apart."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.full((24, 24, 3), (10 * i, 255 - 10 * i, 128), np.uint8) + rng.integers(0, 4, (24, 24, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:02d}.{'png' if i % 3 == 0 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """12 photos in 4 Parquet shards of 3."""
    root = tmp_path_factory.mktemp("stream")
    pack_photo_shards(make_square_photos(root / "photos", 12), root / "shards", images_per_shard=3)
    return root / "shards"


def open_stream(shards: Path):
    return datasets.load_dataset(str(shards), split="train", streaming=True)


def test_packing_keeps_every_photo_s_bytes_and_key_in_hub_layout_shards(tmp_path, shards):
    files = sorted((shards / "data").iterdir())
    assert [f.name for f in files] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    photos = shards.parent / "photos"
    assert sorted(row["key"] for row in rows) == sorted(p.name for p in photos.iterdir())
    for row in rows:  # the original bytes (PNG and JPEG alike), never re-encoded
        assert row["image"]["bytes"] == (photos / row["key"]).read_bytes() and row["image"]["path"] == row["key"]
    stream = open_stream(shards)
    assert isinstance(stream.features["image"], datasets.Image) and stream.num_shards == 4

    with pytest.raises(ValueError, match="already holds Parquet shards"):
        pack_photo_shards(photos, shards)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        pack_photo_shards(tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_loader_resumed_from_its_state_gives_the_batches_of_the_uninterrupted_one(shards, workers):
    """9 batches of 2 (the 12 photos go round 1.5 times: epochs end mid-run); stopped after 5, an odd number, so a
    2-worker loader resumes at worker 1 of a round; windows of 2 photos, so a window is cut by the stop."""

    def loader() -> StreamLoader:
        photos = StreamingPhotos(open_stream(shards), 16, seed=3, shuffle_buffer_size=2, num_workers=workers)
        return StreamLoader(photos, 2, num_workers=workers)

    reference = [batch["pixel_values"] for batch in islice(loader(), 9)]
    first = loader()
    batches = iter(first)
    before = [next(batches)["pixel_values"] for _ in range(5)]
    saved = json.loads(json.dumps(first.state_dict()))  # what a checkpoint holds
    del batches
    resumed = loader()
    resumed.load_state_dict(saved)
    after = [batch["pixel_values"] for batch in islice(resumed, 4)]
    assert all(torch.equal(a, b) for a, b in zip(reference, before + after, strict=True))
    assert len({bytes(b.numpy()) for b in reference}) == 9  # new crops every batch, the same in both runs


def full_crops(stream, **kwargs) -> list[bytes]:
    """One epoch of photos as full, unflipped crops (one per photo, identifying it)."""
    photos = StreamingPhotos(stream, 8, crop_scale=(1.0, 1.0), hflip=False, shuffle_buffer_size=4, **kwargs)
    samples = []
    for sample in photos:
        if sample["position"]["epoch"] > 0:
            return samples
        samples.append(bytes(sample["pixel_values"].numpy()))


def test_processes_read_disjoint_shares_of_the_stream_and_skip_the_excluded_photos(shards):
    everything = full_crops(open_stream(shards))
    assert len(everything) == len(set(everything)) == 12
    shares = [full_crops(open_stream(shards), process_index=i, num_processes=2) for i in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 6 and sorted(shares[0] + shares[1]) == sorted(everything)

    held = [row["image"] for row in open_stream(shards).cast_column("image", datasets.Image(decode=False)).take(2)]
    kept = full_crops(open_stream(shards), exclude={photo_identity(image) for image in held})
    assert len(kept) == 10 and set(kept) < set(everything)


def test_too_few_shards_are_a_warning_and_other_resume_settings_an_error(shards):
    with pytest.warns(UserWarning, match=r"4 shard\(s\), 4 per process: reading with 4 DataLoader worker\(s\) .*not 5"):
        assert StreamingPhotos(open_stream(shards), 8, num_workers=5).num_workers == 4
    with pytest.warns(UserWarning, match=r"2 per process: reading with 2 DataLoader worker\(s\) per process, not 3"):
        photos = StreamingPhotos(open_stream(shards), 8, num_processes=2, num_workers=3)
    assert StreamLoader(photos, 2, num_workers=3).loader.num_workers == 2
    with pytest.warns(UserWarning, match="4 shards do not split evenly among 3 processes"):
        StreamingPhotos(open_stream(shards), 8, num_processes=3)

    saved = StreamLoader(StreamingPhotos(open_stream(shards), 8, num_workers=2), 2, num_workers=2).state_dict()
    other = StreamLoader(StreamingPhotos(open_stream(shards), 8, num_workers=1), 2, num_workers=1)
    with pytest.raises(ValueError, match=r"saved with num_workers 2 \(now 1\): resume with the same"):
        other.load_state_dict(saved)


def test_a_stream_without_a_readable_photo_stops_instead_of_spinning(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    stream = datasets.Dataset.from_dict({"image": [str(tmp_path / "bad.jpg")]}).cast_column("image", datasets.Image())
    photos = StreamingPhotos(stream.to_iterable_dataset(), 8)
    with warnings.catch_warnings(), pytest.raises(DataFileError, match="no photo to train on in the shards of Data"):
        warnings.simplefilter("ignore")
        next(iter(photos))
