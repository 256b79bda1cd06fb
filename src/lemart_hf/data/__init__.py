"""Datasets: iHarmony4-layout folders (labeled pairs) and their collator; photo folders and the embedded sample
photos for LEMaRT pre-training."""

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
from .photos import EpochShuffleSampler, PhotoDataset, StreamingPhotos, collate_photos, list_images, load_crop
from .samples import SAMPLE_PHOTOS, sample_photo_paths

__all__ = [
    "IHARMONY4_SUBSETS",
    "SAMPLE_PHOTOS",
    "DataFileError",
    "EpochShuffleSampler",
    "HarmonizationCollator",
    "PhotoDataset",
    "StreamingPhotos",
    "collate_photos",
    "list_images",
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
