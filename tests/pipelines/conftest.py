"""Inputs shared by the pipeline tests (the tiny model and its pipeline, `model_dir` and `pipe`, are in
tests/conftest.py)."""

import numpy as np
import pytest


def _make_pair(height=48, width=56, seed=0):
    """A textured uint8 RGB composite (H, W, 3) and a uint8 mask (H, W) with a rectangle of 255 in the middle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0 * xx], axis=-1)
    image = np.clip(base * 200 + rng.integers(0, 55, (height, width, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : max(height // 4 + 1, 3 * height // 4), width // 4 : max(width // 4 + 1, 3 * width // 4)] = 255
    return image, mask


@pytest.fixture
def make_pair():
    return _make_pair
