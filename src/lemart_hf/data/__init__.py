"""Datasets: iHarmony4-layout folders (labeled pairs) and their collator; photo folders, the embedded sample
photos and streamed photo shards for LEMaRT pre-training."""

from .iharmony4 import (
    IHARMONY4_SUBSETS,
    DataFileError,
    HarmonizationCollator,
    example_to_tensors,
    find_subsets,
    hold_out_photos,
    load_iharmony4,
    pil_to_tensor,
    random_resized_crop_flip,
    split_composite_name,
    subset_sort_key,
)
from .photos import EpochShuffleSampler, PhotoDataset, collate_photos, list_images, load_crop
from .samples import SAMPLE_PHOTOS, sample_photo_paths
from .shards import pack_photo_shards
from .streaming import StreamingPhotos, StreamLoader

__all__ = [
    "IHARMONY4_SUBSETS",
    "SAMPLE_PHOTOS",
    "DataFileError",
    "EpochShuffleSampler",
    "HarmonizationCollator",
    "PhotoDataset",
    "StreamLoader",
    "StreamingPhotos",
    "collate_photos",
    "list_images",
    "pack_photo_shards",
    "load_crop",
    "sample_photo_paths",
    "example_to_tensors",
    "find_subsets",
    "hold_out_photos",
    "load_iharmony4",
    "pil_to_tensor",
    "random_resized_crop_flip",
    "split_composite_name",
    "subset_sort_key",
]
