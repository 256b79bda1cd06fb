"""Shared fixtures for the LEMaRT tests: small natural-looking images."""

import pytest
import torch
import torch.nn.functional as F


def textured_images(batch: int, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """(batch, 3, H, W) in [0.05, 0.95]: smooth colour fields plus fine texture, like downsized photos."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(batch, 3, 4, 4, generator=generator), size=(height, width), mode="bilinear")
    fine = torch.rand(batch, 3, height, width, generator=generator)
    return (0.05 + 0.9 * (0.7 * coarse + 0.3 * fine)).clamp(0, 1)


@pytest.fixture
def make_images():
    """The ``textured_images`` factory."""
    return textured_images
