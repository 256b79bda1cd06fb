"""Streamed photos for LEMaRT pre-training at corpus scale, resumable exactly: `StreamingPhotos` (a `datasets` stream
of shards -> keyed crops, split by process and DataLoader worker, block-shuffled) and `StreamLoader` (the DataLoader
that records where every worker is, so that a checkpoint holds the stream position).

Splitting. Every process keeps its share of the shards (`datasets.distributed.split_dataset_by_node`), and `datasets`
gives every DataLoader worker of a process its own shards. A worker reads whole shards, so (processes x workers)
shards keep every worker busy; with fewer, each process reads with as many workers as it has shards (a warning says
so; `examples/pack_shards.py` packs more), and with fewer shards than processes every process reads all shards and
keeps its share of the photos.

Shuffling. `datasets`' own shuffle buffer loses its content at a checkpoint (its documentation says so: resuming
refills it with new rows), so a resumed run would see other photos. Here each worker reads ``shuffle_buffer_size``
rows (undecoded bytes) at a time and yields them in a random order drawn from (seed, worker, epoch, window): a block
shuffle. A position is then (epoch, window, photos of the window done, the `datasets` state at the window's start),
and resuming re-reads one window and skips what was done.

Order. torch's DataLoader hands out the batches of an iterable dataset's workers round-robin (worker 0, 1, ...,
W-1, 0, ...). Each batch carries its worker's position; `StreamLoader` keeps the last one per worker and the worker
whose batch comes next. A resumed loader starts every worker at its position; its workers again start at 0, so in
every round it holds back the batches of the workers before the saved next one until the round's end. The batches,
crops and photos after a resume are those of the uninterrupted run.

Each worker reads its shards again and again (epochs counted per worker, with new window orders and crops), so the
stream never ends: train for a number of steps.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from itertools import islice

import numpy as np
import torch

from ..lemart.image_loading import UNREADABLE_IMAGE_ERRORS, SkippedImageWarning
from .iharmony4 import DataFileError
from .photos import _where, collate_photos, keyed_generator, load_crop

_SHUFFLE_STREAM = 0xB10C5


def undecoded_images(dataset, image_column: str):
    """The stream's ``image_column`` alone, as undecoded `datasets.Image` values (``{"bytes", "path"}``).

    Raises:
        ValueError: the column is not in the stream.
    """
    import datasets

    features = dataset.features
    if features is not None and image_column not in features:
        raise ValueError(f"image column {image_column!r} not in the dataset's columns {list(features)}")
    dataset = dataset.select_columns([image_column])
    if features is not None:
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


def photo_identity(source) -> str:
    """What tells two photos of a stream apart: a digest of an undecoded image's bytes, else its path."""
    if isinstance(source, dict) and source.get("bytes") is not None:
        return hashlib.blake2b(source["bytes"], digest_size=16).hexdigest()
    return _where(source)


def stream_key(epoch: int, reader: int, index: int) -> int:
    """The crop key of photo ``index`` (< 2**32) of a reader's (< 2**16) epoch (< 2**15): an int64."""
    return (epoch << 48) | (reader << 32) | index


class StreamingPhotos(torch.utils.data.IterableDataset):
    """A `datasets.IterableDataset` with an image column -> endless ``{"pixel_values": uint8 (3, R, R), "key": int,
    "position": dict}`` samples, a random square crop (and flip) each.

    Args:
        dataset: the stream (any format `datasets` streams: parquet or webdataset shards, an image folder).
        resolution: side R of the crops.
        seed: seeds the window orders and the crops (keyed by `stream_key`).
        crop_scale, hflip: as `lemart_hf.data.photos.PhotoDataset`.
        image_column: the stream's image column.
        shuffle_buffer_size: rows per shuffled window (1: the stream's order).
        exclude: `photo_identity` values of photos never to yield (the held-out validation photos).
        process_index, num_processes: this process's share of the shards.
        num_workers: the DataLoader workers of each process (0 reads in the process itself). A worker reads whole
            shards: with fewer shards per process, as many workers as shards (``self.num_workers``), with a warning.

    A photo that cannot be decoded is skipped with a `SkippedImageWarning` counting them (``num_skipped``, per worker);
    a worker with no photo in a whole epoch of its shards raises a `lemart_hf.data.DataFileError` (one line).
    """

    def __init__(
        self,
        dataset,
        resolution: int,
        *,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        image_column: str = "image",
        shuffle_buffer_size: int = 1000,
        exclude=(),
        process_index: int = 0,
        num_processes: int = 1,
        num_workers: int = 0,
    ):
        from datasets.distributed import split_dataset_by_node

        if shuffle_buffer_size < 1:
            raise ValueError(f"shuffle_buffer_size must be >= 1, got {shuffle_buffer_size}")
        dataset = undecoded_images(dataset, image_column)
        total_shards, readers = dataset.num_shards, max(1, num_workers)
        if num_processes > 1:
            if total_shards % num_processes:
                warnings.warn(
                    f"the stream's {total_shards} shards do not split evenly among {num_processes} processes: every "
                    f"process reads all of them and keeps 1 photo in {num_processes}; pack a multiple of "
                    f"{num_processes} shards to read each once",
                    stacklevel=2,
                )
            dataset = split_dataset_by_node(dataset, rank=process_index, world_size=num_processes)
        if dataset.num_shards < readers:
            warnings.warn(
                f"the stream has {total_shards} shard(s), {dataset.num_shards} per process: reading with "
                f"{dataset.num_shards} DataLoader worker(s) per process, not {num_workers} (a worker reads whole "
                "shards); pack the photos into more shards to use more (examples/pack_shards.py --images_per_shard)",
                stacklevel=2,
            )
            num_workers = dataset.num_shards
        self.dataset = dataset
        self.resolution = resolution
        self.seed = seed
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.image_column = image_column
        self.shuffle_buffer_size = shuffle_buffer_size
        self.exclude = frozenset(exclude)
        self.process_index = process_index
        self.num_processes = num_processes
        self.num_workers = num_workers
        #: worker -> the position to start from (set by `StreamLoader`); absent: the start of the stream.
        self.start: dict[int, dict] = {}
        self.num_skipped = 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        reader = self.process_index * max(1, self.num_workers) + worker  # this worker's number among all processes
        position = self.start.get(worker) or {"epoch": 0, "window": 0, "done": 0, "index": 0, "source": None}
        while True:
            yielded = 0
            for sample in self._read_epoch(worker, reader, position):
                yielded += 1
                yield sample
            if not yielded and position["index"] == 0:  # a whole epoch without a photo: stop, do not spin
                raise DataFileError(
                    f"no photo to train on in the shards of DataLoader worker {worker} of process "
                    f"{self.process_index} (each unreadable or held out for validation)"
                )
            position = {"epoch": position["epoch"] + 1, "window": 0, "done": 0, "index": 0, "source": None}

    def _read_epoch(self, worker: int, reader: int, start: dict):
        """The samples of one epoch of this worker's shards, from position ``start`` on."""
        epoch, window, index, source = start["epoch"], start["window"], start["index"], start["source"]
        self.dataset.load_state_dict(source)  # None: from the first row
        rows = iter(self.dataset)
        skip = start["done"]
        while block := list(islice(rows, self.shuffle_buffer_size)):
            entropy = [self.seed, reader, epoch, window, _SHUFFLE_STREAM]
            mixed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
            order = torch.randperm(len(block), generator=torch.Generator().manual_seed(mixed)).tolist()
            for done in range(skip, len(block)):
                source_image = block[order[done]][self.image_column]
                key = stream_key(epoch, reader, index)
                index += 1
                if photo_identity(source_image) in self.exclude:
                    continue
                try:
                    pixels = load_crop(
                        source_image,
                        self.resolution,
                        scale=self.crop_scale,
                        hflip=self.hflip,
                        generator=keyed_generator(self.seed, key),
                    )
                except UNREADABLE_IMAGE_ERRORS as error:
                    self.num_skipped += 1
                    warnings.warn(
                        f"Skipped an unreadable photo of the stream ({_where(source_image)}: {type(error).__name__}: "
                        f"{error}); {self.num_skipped} skipped so far",
                        SkippedImageWarning,
                        stacklevel=2,
                    )
                    continue
                position = {
                    "worker": worker, "epoch": epoch, "window": window, "done": done + 1, "index": index,
                    "source": source,
                }  # fmt: skip
                yield {"pixel_values": pixels, "key": key, "position": position}
            skip, window = 0, window + 1
            source = self.dataset.state_dict()  # where the next window starts


def collate_stream(samples: list[dict]) -> dict:
    """`StreamingPhotos` samples (of one worker) -> `collate_photos`' batch plus the last sample's ``"position"``."""
    return {**collate_photos(samples), "position": samples[-1]["position"]}


class StreamLoader:
    """A DataLoader over `StreamingPhotos` that knows where it is: `state_dict` after any batch, `load_state_dict`
    (before iterating) to go on from there exactly. Iterating again also goes on from where it stopped.

    Yields `collate_photos` batches: ``{"pixel_values": uint8 (B, 3, R, R), "key": int64 (B,)}``.

    Args:
        dataset: the stream; the loader runs its ``num_workers`` workers.
        batch_size: photos per batch (one worker's).
        **dataloader_kwargs: the rest of `torch.utils.data.DataLoader`'s settings (``num_workers`` is the
            dataset's; not ``persistent_workers``: each iteration starts its workers at the recorded positions).
    """

    def __init__(self, dataset: StreamingPhotos, batch_size: int, **dataloader_kwargs):
        dataloader_kwargs.pop("persistent_workers", None)
        dataloader_kwargs["num_workers"] = dataset.num_workers
        self.dataset = dataset
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_stream, drop_last=True, **dataloader_kwargs
        )
        self.num_readers = max(1, dataset.num_workers)
        self.positions: list[dict | None] = [None] * self.num_readers
        self.next_worker = 0

    def __iter__(self):
        readers, first = self.num_readers, self.next_worker
        self.dataset.start = {worker: p for worker, p in enumerate(self.positions) if p is not None}
        held = []  # this round's batches of the workers before `first`
        for batch in self.loader:
            position = batch.pop("position")
            worker = position["worker"]
            if worker < first:
                held.append((position, batch))
            else:
                yield self._consumed(position, batch)
            if worker == readers - 1:
                for earlier in held:
                    yield self._consumed(*earlier)
                held = []

    def _consumed(self, position: dict, batch: dict) -> dict:
        self.positions[position["worker"]] = position
        self.next_worker = (position["worker"] + 1) % self.num_readers
        return batch

    def state_dict(self) -> dict:
        """This process's stream position (JSON-serializable; a copy)."""
        return copy.deepcopy(
            {
                "process_index": self.dataset.process_index,
                "num_processes": self.dataset.num_processes,
                "num_workers": self.dataset.num_workers,
                "shuffle_buffer_size": self.dataset.shuffle_buffer_size,
                "next_worker": self.next_worker,
                "workers": self.positions,
            }
        )

    def load_state_dict(self, state: dict) -> None:
        """Go on from a position saved by `state_dict` (of this process, with the same processes, workers and window).

        Raises:
            ValueError: the position was saved with other settings; it cannot be mapped onto these.
        """
        saved = {k: state.get(k) for k in ("num_processes", "num_workers", "shuffle_buffer_size")}
        current = {k: getattr(self.dataset, k) for k in saved}
        if saved != current:
            settings = ", ".join(f"{k} {saved[k]} (now {current[k]})" for k in saved if saved[k] != current[k])
            raise ValueError(
                f"the stream position was saved with {settings}: resume with the same number of processes, "
                "--dataloader_num_workers and --shuffle_buffer_size"
            )
        self.positions = copy.deepcopy(state["workers"])
        self.next_worker = state["next_worker"]


__all__ = ["StreamLoader", "StreamingPhotos", "collate_stream", "photo_identity", "stream_key", "undecoded_images"]
