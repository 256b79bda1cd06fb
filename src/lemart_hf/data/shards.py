"""Packing a photo folder into Parquet shards for streamed pre-training (`pack_photo_shards`).

Why Parquet: it is one of img2dataset's outputs and the Hub's own format for image datasets (what `datasets`'
``push_to_hub`` writes and the dataset viewer shows), and its typed ``image`` column holds every photo's original
bytes and file name whatever the format. WebDataset tar shards, img2dataset's default and the form LAION-5B,
DataComp and COYO come in, stream just as well (`lemart_hf.data.streaming` reads any stream `datasets` reads), but
`datasets` takes a tar's fields from its first samples: one PNG among JPEGs becomes a row without an image, so
original bytes of a mixed folder cannot be packed as tar without re-encoding.

The layout is the Hub's: ``OUT_DIR/data/train-00000-of-00012.parquet`` ..., columns ``key`` (the photo's path in
the folder) and ``image`` (`datasets.Image`: ``{"bytes", "path"}``), row groups of 100 photos. ``load_dataset(OUT_DIR,
streaming=True)`` reads it, and ``hf upload REPO OUT_DIR --repo-type dataset`` publishes it as it is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .photos import list_images

#: Photos per Parquet row group: `datasets`' own choice for image datasets.
ROW_GROUP_SIZE = 100


def pack_photo_shards(
    photo_dir: str | os.PathLike, out_dir: str | os.PathLike, images_per_shard: int = 1000, seed: int = 0
) -> list[Path]:
    """Pack the readable photos under ``photo_dir`` (recursively) into Parquet shards in ``out_dir/data``.

    The photos are shuffled (by ``seed``) before packing, so neighbours in the folder (a burst, one camera) spread
    over the shards; their bytes are stored as they are, never re-encoded. Unreadable files are left out with one
    `SkippedImageWarning`. Returns the shard paths.

    Raises:
        FileNotFoundError: ``photo_dir`` is not a directory.
        ValueError: no readable photo; ``images_per_shard`` < 1; ``out_dir/data`` already holds Parquet files.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    if images_per_shard < 1:
        raise ValueError(f"images_per_shard must be >= 1, got {images_per_shard}")
    data_dir = Path(out_dir) / "data"
    if data_dir.is_dir() and any(data_dir.glob("*.parquet")):
        raise ValueError(f"{str(data_dir)!r} already holds Parquet shards: pack into an empty folder")
    photos = list_images(photo_dir)
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(seed)).tolist()
    photos = [photos[i] for i in order]
    schema = datasets.Features({"key": datasets.Value("string"), "image": datasets.Image()}).arrow_schema
    num_shards = math.ceil(len(photos) / images_per_shard)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(num_shards):
        path = data_dir / f"train-{shard:05d}-of-{num_shards:05d}.parquet"
        members = photos[shard * images_per_shard : (shard + 1) * images_per_shard]
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, len(members), ROW_GROUP_SIZE):
                rows = []
                for photo in members[start : start + ROW_GROUP_SIZE]:
                    key = Path(os.path.relpath(photo, photo_dir)).as_posix()
                    rows.append({"key": key, "image": {"bytes": Path(photo).read_bytes(), "path": key}})
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        paths.append(path)
    return paths


__all__ = ["ROW_GROUP_SIZE", "pack_photo_shards"]
