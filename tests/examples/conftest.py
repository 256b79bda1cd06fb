"""Tiny data and model configs for the example-script tests (kept small: 2 shared CPU cores)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: SwinIH small enough for a few training steps in about a second.
TINY_CONFIG = {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4}


def _smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth colour gradients plus a few blobs and a little noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(0, 1, (3, 3))
    image = base[:, 0, None, None] + base[:, 1, None, None] * xx + base[:, 2, None, None] * yy
    for _ in range(3):
        cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2)
        image = image + rng.uniform(-0.5, 0.5, (3, 1, 1)) * blob
    image = image.transpose(1, 2, 0) / image.max() + rng.normal(0, 0.02, (height, width, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_photo_folder(folder: Path, count: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = int(rng.integers(40, 72)), int(rng.integers(40, 72))
        Image.fromarray(_smooth_image(rng, height, width)).save(folder / f"photo_{i:02d}.{'jpg' if i % 2 else 'png'}")
    return folder


def make_iharmony4_tree(root: Path, subset: str = "HTiny", train: int = 8, test: int = 4, seed: int = 0) -> Path:
    """``<root>/<subset>/{composite_images,masks,real_images}`` + list files, iHarmony4 naming, 48x48 images."""
    rng = np.random.default_rng(seed)
    base = root / subset
    for name in ("composite_images", "masks", "real_images"):
        (base / name).mkdir(parents=True, exist_ok=True)
    lists = {"train": [], "test": []}
    for i in range(train + test):
        real = _smooth_image(rng, 48, 48)
        mask = np.zeros((48, 48), np.uint8)
        top, left = rng.integers(4, 20, size=2)
        mask[top : top + 20, left : left + 24] = 255
        shift = rng.uniform(-60, 60, 3)
        composite = np.where(mask[..., None] > 0, np.clip(real + shift, 0, 255), real).astype(np.uint8)
        stem = f"r{i:03d}"
        Image.fromarray(real).save(base / "real_images" / f"{stem}.jpg", quality=95)
        Image.fromarray(mask).save(base / "masks" / f"{stem}_1.png")
        Image.fromarray(composite).save(base / "composite_images" / f"{stem}_1_1.jpg", quality=95)
        lists["train" if i < train else "test"].append(f"{stem}_1_1.jpg")
    for split, names in lists.items():
        (base / f"{subset}_{split}.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "swinih_test.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return str(path)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def iharmony4_root(tmp_path_factory) -> Path:
    return make_iharmony4_tree(tmp_path_factory.mktemp("iharmony4"))


def script_env() -> dict:
    # ACCELERATE_USE_CPU: processes started by torch.distributed's launcher (accelerate's --multi_gpu) on a
    # machine without GPUs then form a gloo (MULTI_CPU) group.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def load_script(name: str):
    """Import ``examples/<name>`` as a module (its ``parse_args`` and ``main(argv)``)."""
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(
    script: str, args: list[str], *, launcher: list[str] | None = None, timeout: int = 300, check: bool = True
):
    """Run an example script in a subprocess (``python`` or ``accelerate launch`` when ``launcher`` is given)."""
    if launcher is None:
        command = [sys.executable, str(EXAMPLES / script), *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, str(EXAMPLES / script), *args]
    result = subprocess.run(
        command, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture(scope="session")
def load_example():
    """`load_script(name)`: an example script imported as a module."""
    return load_script


@pytest.fixture(scope="session")
def run_example():
    """`run_script(script, args, launcher=None, timeout=300, check=True)`: run an example in a subprocess."""
    return run_script


@pytest.fixture(scope="session")
def example_env() -> dict:
    """The environment example subprocesses run in (offline, one thread per process)."""
    return script_env()


@pytest.fixture
def run_in_process():
    """`run(script, argv)`: an example's ``main(argv)`` in this process (no start-up cost: imports are done).

    One torch thread, like the subprocesses (OMP_NUM_THREADS=1), so in-process and subprocess runs compute
    bit-identical results; Accelerate's process-wide state is reset before and after.
    """
    import torch
    from accelerate.state import AcceleratorState, GradientState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    threads = torch.get_num_threads()

    def run(script: str, argv: list[str]):
        module = load_script(script)
        torch.set_num_threads(1)
        reset()
        try:
            return module.main(argv)
        finally:
            reset()
            torch.set_num_threads(threads)

    yield run
    torch.set_num_threads(threads)
