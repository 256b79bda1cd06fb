#!/usr/bin/env python
"""Input pipeline vs model: images/s of run_pretrain's data loading (decode + random crop + flip, uint8 batches) from
an image folder and from Parquet shards of the same photos, with 0 / 1 / 2 DataLoader workers, next to the
training-step rate of SwinIH-tiny (forward + backward, bf16 autocast on CPU) at 64 and 128 px.

    python benchmarks/bench_input_pipeline.py                                  # the photos embedded in [dev]
    python benchmarks/bench_input_pipeline.py --photo_dir ../shared/data/photos --workers 0,1,2 --rounds 3

The loaders are the ones run_pretrain.py builds: `PhotoDataset` + `EpochShuffleSampler` (``--train_dir``) and
`StreamingPhotos` + `StreamLoader` (``--dataset_name SHARDS --streaming``, shards packed by `pack_photo_shards` into a
temporary folder). Each case: a warm-up batch (worker start-up, first shard opened), then ``--batches`` batches
timed; the best of ``--rounds`` rounds is reported (other processes only ever slow a run down), with the median.
The data rate does not include the LEMaRT composites (made batched in the training process:
bench_composer.py). With W workers the loader keeps up when its rate exceeds the step's: that is the comparison
to read. Timings on a machine shared with other jobs are noisy: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from functools import partial
from itertools import islice

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_model.py

import torch  # noqa: E402
from bench_model import build_model, load_swinih, make_step, timed  # noqa: E402

NOISE_NOTE = (
    "Measured on a machine that may be shared with other jobs (here: 2 cores, a training run beside it): the numbers "
    "are noisy; compare rows of one run."
)


def folder_loader(photos: list[str], resolution: int, batch: int, workers: int):
    from lemart_hf.data.photos import EpochShuffleSampler, PhotoDataset, collate_photos

    dataset = PhotoDataset(photos, resolution, seed=0)
    sampler = EpochShuffleSampler(len(dataset), seed=0, repeats=max(1, 64 * batch // len(dataset)))
    kwargs = {"num_workers": workers, "prefetch_factor": 4, "persistent_workers": True} if workers else {}
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, collate_fn=collate_photos, drop_last=True, **kwargs
    )


def shard_loader(shards: str, resolution: int, batch: int, workers: int, buffer: int):
    import datasets

    from lemart_hf.data.streaming import StreamingPhotos, StreamLoader

    stream = datasets.load_dataset(shards, split="train", streaming=True)
    photos = StreamingPhotos(stream, resolution, seed=0, shuffle_buffer_size=buffer, num_workers=workers)
    return StreamLoader(photos, batch, num_workers=workers, **({"prefetch_factor": 4} if workers else {}))


def loader_rate(make_loader, batches: int, batch: int) -> float:
    """Images/s of ``batches`` batches after a warm-up batch."""
    iterator = iter(make_loader())
    next(iterator)
    start = time.perf_counter()
    for _ in islice(iterator, batches):
        pass
    seconds = time.perf_counter() - start
    del iterator
    return batches * batch / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo_dir", default=None, help="Photos to read (default: the embedded sample photos).")
    parser.add_argument("--max_photos", type=int, default=512, help="Use at most this many of them.")
    parser.add_argument("--sizes", default="64,128", help="Crop / model resolutions.")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to time.")
    parser.add_argument("--batch_size", type=int, default=16, help="Photos per batch (run_pretrain's default).")
    parser.add_argument("--batches", type=int, default=16, help="Timed batches per case and round.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shuffle_buffer_size", type=int, default=256)
    parser.add_argument("--model_steps", type=int, default=3, help="Timed model steps per size and round.")
    args = parser.parse_args(argv)

    from lemart_hf.data.photos import list_images
    from lemart_hf.data.samples import sample_photo_paths
    from lemart_hf.data.shards import pack_photo_shards

    photos = (list_images(args.photo_dir) if args.photo_dir else sample_photo_paths())[: args.max_photos]
    sizes = [int(s) for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    batch = args.batch_size
    work = tempfile.mkdtemp(prefix="bench_input_")
    try:
        folder = os.path.join(work, "photos")
        os.makedirs(folder)
        for i, photo in enumerate(photos):  # one flat folder of links: what --train_dir reads
            os.symlink(os.path.abspath(photo), os.path.join(folder, f"{i:05d}_{os.path.basename(photo)}"))
        folder_photos = list_images(folder)
        shards = os.path.join(work, "shards")
        num_shards = 2 * max(max(workers), 1)
        pack_photo_shards(folder, shards, images_per_shard=-(-len(photos) // num_shards))
        megapixels = statistics.median(_megapixels(p) for p in photos)
        print(
            f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs; "
            f"{len(photos)} photos (median {megapixels:.2f} MP) from {args.photo_dir or 'the embedded sample photos'}; "
            f"batch {batch}, {args.batches} batches x {args.rounds} rounds"
        )
        print(f"# {NOISE_NOTE}")
        print("| what | size | workers | images/s (best) | images/s (median) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for size in sizes:
            for source in ("folder", "shards"):
                for count in workers:
                    if source == "folder":
                        make = partial(folder_loader, folder_photos, size, batch, count)
                    else:
                        make = partial(shard_loader, shards, size, batch, count, args.shuffle_buffer_size)
                    rates = [loader_rate(make, args.batches, batch) for _ in range(args.rounds)]
                    print(
                        f"| input pipeline, {source} | {size} | {count} | {max(rates):.0f} | "
                        f"{statistics.median(rates):.0f} |",
                        flush=True,
                    )
            model = build_model(load_swinih(), "swinih-tiny", "sdpa", torch.device("cpu"))
            step = make_step(model, torch.device("cpu"), torch.bfloat16, True, size, batch)
            step()  # warm-up
            rates = [batch / timed(step, torch.device("cpu")) for _ in range(args.rounds * args.model_steps)]
            print(
                f"| model step, swinih-tiny fwd+bwd bf16 autocast | {size} | | {max(rates):.1f} | "
                f"{statistics.median(rates):.1f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _megapixels(path: str) -> float:
    from PIL import Image

    with Image.open(path) as image:
        return image.width * image.height / 1e6


if __name__ == "__main__":
    main()
