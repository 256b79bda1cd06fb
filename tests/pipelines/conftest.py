"""A tiny SwinIH saved with a 64x64 working size, and the pipeline built from it, shared by the pipeline tests."""

import numpy as np
import pytest
import torch
from transformers import pipeline

import lemart_hf  # noqa: F401  (registers the task)
from lemart_hf import SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor

TINY = {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4}
WORKING_SIZE = 64


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: one thread is faster, and on a shared, busy 2-core machine two threads can be 50x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_swinih")
    SwinIHForHarmonization(SwinIHConfig(**TINY)).eval().save_pretrained(folder)
    SwinIHImageProcessor(size={"height": WORKING_SIZE, "width": WORKING_SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def pipe(model_dir):
    return pipeline("image-harmonization", model=str(model_dir), device="cpu")


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
