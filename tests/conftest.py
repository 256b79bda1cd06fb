"""Shared fixtures. `shared_data` points at ../shared/data beside the project and skips when it is absent;
`model_dir` is a tiny SwinIH saved with a 64x64 working size, `pipe` the "image-harmonization" pipeline on it;
`packaged_onnx` the packaged model exported to ONNX (skips without the `onnx` extra); `free_port` a function that
finds a free TCP port on 127.0.0.1."""

import importlib.util
import socket
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def _free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a process group or a server: the defaults may be taken by another run)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port()`` -> a free TCP port on 127.0.0.1, a new one per call."""
    return _free_port


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: one thread is faster, and on a shared, busy 2-core machine two threads can be 50x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from lemart_hf import SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_swinih")
    tiny = {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4}
    SwinIHForHarmonization(SwinIHConfig(**tiny)).eval().save_pretrained(folder)
    SwinIHImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


@pytest.fixture
def run_cli(capsys):
    """`run_cli(args)`: `lemart-harmonize` run in this process -> (exit code, stdout, stderr)."""
    from lemart_hf.cli import main

    def run(args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def pipe(model_dir):
    from transformers import pipeline

    import lemart_hf  # noqa: F401  (registers the task)

    return pipeline("image-harmonization", model=str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def packaged_onnx(tmp_path_factory) -> Path:
    """The packaged model exported by `lemart-harmonize export-onnx` (once per session: tens of seconds on 2 cores);
    skips without onnxruntime and onnxscript (`pip install "lemart_hf[onnx]"`)."""
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript")):
        pytest.skip('needs onnxruntime and onnxscript: pip install "lemart_hf[onnx]"')
    from lemart_hf.cli import main

    path = tmp_path_factory.mktemp("onnx") / "swinih.onnx"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["export-onnx", str(path), "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    return path
