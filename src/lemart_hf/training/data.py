"""Training data: the DataLoader worker settings both scripts share (`dataloader_kwargs`) and the labeled pairs of
fine-tuning (`HarmonizationTrainingPairs`: keyed random crops of iHarmony4-layout rows; `collate_pairs`)."""

from __future__ import annotations

import argparse

import torch

from ..stopping import ignore_stop_signals


def dataloader_kwargs(args: argparse.Namespace, *, pin_memory: bool, persistent: bool = True) -> dict:
    """Worker settings shared by the training DataLoaders (workers kept across epochs when ``persistent``)."""
    workers = args.dataloader_num_workers
    kwargs = {"num_workers": workers, "pin_memory": pin_memory}
    if workers > 0:
        kwargs.update(persistent_workers=persistent, prefetch_factor=4, worker_init_fn=ignore_stop_signals)
    return kwargs


class HarmonizationTrainingPairs(torch.utils.data.Dataset):
    """`lemart_hf.data.load_iharmony4` rows -> random training crops, keyed like `lemart_hf.data.photos.PhotoDataset`.

    ``dataset[key]`` reads row ``key % len(dataset)`` and applies ONE random resized crop and flip to its composite,
    mask and real image alike (`lemart_hf.data.random_resized_crop_flip`, drawn from a generator keyed by
    ``(seed, key)``), resized to ``resolution``; the mask is then thresholded at 0.5 (binary, as the default
    evaluation protocol has it). Returns ``{"composite" (3, R, R), "mask" (1, R, R), "real" (3, R, R)`` float in
    [0, 1], ``"key"}``. Use it with `lemart_hf.data.photos.EpochShuffleSampler` for exact resumption.
    """

    def __init__(
        self,
        dataset,
        resolution: int,
        *,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        binary_mask: bool = True,
    ):
        from ..data.iharmony4 import without_image_decoding

        if len(dataset) == 0:
            raise ValueError("no training pairs")
        self.dataset = without_image_decoding(dataset)  # decoded by example_to_tensors, which names unreadable files
        self.resolution = resolution
        self.seed = seed
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.binary_mask = binary_mask

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> dict:
        from ..data.iharmony4 import example_to_tensors, random_resized_crop_flip
        from ..data.photos import keyed_generator

        key = int(key)
        tensors = example_to_tensors(self.dataset[key % len(self)])
        tensors = random_resized_crop_flip(
            tensors,
            (self.resolution, self.resolution),
            scale=self.crop_scale,
            hflip_p=0.5 if self.hflip else 0.0,
            generator=keyed_generator(self.seed, key),
        )
        mask = (tensors["mask"] > 0.5).float() if self.binary_mask else tensors["mask"].clamp(0, 1)
        return {
            "composite": tensors["composite"].clamp(0, 1),
            "mask": mask,
            "real": tensors["real"].clamp(0, 1),
            "key": key,
        }


def collate_pairs(samples: list[dict]) -> dict[str, torch.Tensor]:
    """`HarmonizationTrainingPairs` samples -> ``{"pixel_values" (B, 4, R, R), "labels" (B, 3, R, R), "mask", "key"}``."""
    composite = torch.stack([s["composite"] for s in samples])
    mask = torch.stack([s["mask"] for s in samples])
    return {
        "pixel_values": torch.cat([composite, mask], dim=1),
        "labels": torch.stack([s["real"] for s in samples]),
        "mask": mask,
        "key": torch.tensor([s["key"] for s in samples], dtype=torch.long),
    }
