#!/usr/bin/env python
"""Pack a folder of photos into Parquet shards for streamed pre-training (`run_pretrain.py --streaming`).

    python examples/pack_shards.py PHOTO_DIR OUT_DIR --images_per_shard 1000
    accelerate launch examples/run_pretrain.py --dataset_name OUT_DIR --streaming --max_train_steps 20000 ...

Every photo's original bytes (never re-encoded) with its path in the folder as key, shuffled, in
OUT_DIR/data/train-*-of-*.parquet (the Hub's layout: `hf upload REPO OUT_DIR --repo-type dataset` publishes it).
A stream needs at least (processes x DataLoader workers) shards: each worker reads whole shards. Why Parquet and
not WebDataset tar: `lemart_hf.data.shards`.
"""

from __future__ import annotations

import argparse
import os
import warnings

from lemart_hf.data.shards import pack_photo_shards
from lemart_hf.lemart.image_loading import SkippedImageWarning


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo_dir", help="A folder of photos (searched recursively).")
    parser.add_argument("out_dir", help="Where to write data/train-*.parquet (an empty or new folder).")
    parser.add_argument("--images_per_shard", type=int, default=1000, help="Photos per shard (default 1000).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the order the photos are packed in.")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.photo_dir):
        parser.error(f"{args.photo_dir!r} is not a directory")
    if args.images_per_shard < 1:
        parser.error(f"--images_per_shard must be >= 1, got {args.images_per_shard}")
    return args


def main(argv: list[str] | None = None) -> list:
    args = parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedImageWarning)
        try:
            paths = pack_photo_shards(args.photo_dir, args.out_dir, args.images_per_shard, args.seed)
        except (ValueError, OSError) as error:
            raise SystemExit(f"pack_shards.py: error: {error}") from None
    for warning in caught:
        print(f"warning: {warning.message}")
    megabytes = sum(path.stat().st_size for path in paths) / 2**20
    print(
        f"wrote {len(paths)} shard(s), {megabytes:.1f} MB, to {os.path.join(args.out_dir, 'data')}; they feed up to "
        f"{len(paths)} DataLoader workers in all (processes x --dataloader_num_workers)"
    )
    print(f"train: accelerate launch examples/run_pretrain.py --dataset_name {args.out_dir} --streaming ...")
    return paths


if __name__ == "__main__":
    main()
