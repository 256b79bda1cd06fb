"""Datasets: iHarmony4-layout folders (labeled harmonization pairs) as `datasets.Dataset`, and their collator."""

from .iharmony4 import (
    IHARMONY4_SUBSETS,
    HarmonizationCollator,
    example_to_tensors,
    find_subsets,
    load_iharmony4,
    pil_to_tensor,
    random_resized_crop_flip,
    split_composite_name,
    subset_sort_key,
)

__all__ = [
    "IHARMONY4_SUBSETS",
    "HarmonizationCollator",
    "example_to_tensors",
    "find_subsets",
    "load_iharmony4",
    "pil_to_tensor",
    "random_resized_crop_flip",
    "split_composite_name",
    "subset_sort_key",
]
