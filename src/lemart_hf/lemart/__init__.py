"""LEMaRT pre-training data: masks, perturbations and the online composer (DESIGN.md §1, §3)."""

from .composer import LEMaRTComposer, foreground_change
from .image_loading import IMAGE_EXTENSIONS, SkippedImageWarning, load_image_folder, to_rgb_image
from .masks import MASK_STRATEGIES, block_mask, grid_mask, make_mask, random_mask
from .perturbations import DEFAULT_PERTURBATIONS, PERTURBATIONS, Perturbation, RandomPerturbations
from .seeding import generator_for_step, generator_on_device
from .transforms import LEMaRTTransform, lemart_transform

__all__ = [
    "DEFAULT_PERTURBATIONS",
    "IMAGE_EXTENSIONS",
    "MASK_STRATEGIES",
    "PERTURBATIONS",
    "LEMaRTComposer",
    "LEMaRTTransform",
    "Perturbation",
    "RandomPerturbations",
    "SkippedImageWarning",
    "block_mask",
    "foreground_change",
    "generator_for_step",
    "generator_on_device",
    "grid_mask",
    "lemart_transform",
    "load_image_folder",
    "make_mask",
    "random_mask",
    "to_rgb_image",
]
