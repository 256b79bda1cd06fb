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
    script: str,
    args: list[str],
    *,
    launcher: list[str] | None = None,
    timeout: int = 300,
    check: bool = True,
    env: dict | None = None,
):
    """Run an example script in a subprocess (``python`` or ``accelerate launch`` when ``launcher`` is given), in
    `script_env` updated with ``env``."""
    if launcher is None:
        command = [sys.executable, str(EXAMPLES / script), *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, str(EXAMPLES / script), *args]
    result = subprocess.run(
        command, cwd=ROOT, env={**script_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False,
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
    """`run_script(script, args, launcher=None, timeout=300, check=True, env=None)`: an example in a subprocess."""
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


class StandInHub:
    """A small HTTP stand-in of the Hugging Face Hub on 127.0.0.1, for `HF_ENDPOINT`: the endpoints huggingface_hub's
    `create_repo`, `auth_check(write=True)` and `upload_folder` call (the card's metadata is validated with
    huggingface_hub's `ModelCard`), recording every request and commit.

    Tokens: ``"hf_write"`` may write, ``"hf_read"`` only read, anything else is refused (401). Repositories are
    created in the token owner's namespace ("tester") unless one is given. Every file is declared "regular" at
    preupload, so its content comes inline (base64) in the commit, where it is recorded; LFS / Xet storage is
    not stood in for.

    Attributes:
        url: the endpoint, ``http://127.0.0.1:<port>``.
        requests: ``(method, path, token)`` of every request, in order.
        repos: the ids of the repositories created.
        commits: ``{"repo", "message", "files": {path: bytes}}`` per commit, in order.
    """

    USER = "tester"
    TOKENS = {"hf_write": "write", "hf_read": "read"}

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.requests: list[tuple[str, str, str | None]] = []
        self.repos: set[str] = set()
        self.commits: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler, method: str) -> None:
        import base64
        import re

        path = handler.path.split("?")[0]
        auth = handler.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.requests.append((method, path, token))
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        role = self.TOKENS.get(token)
        repo = re.match(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<rest>.*)$", path)

        def reply(status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        if role is None:
            return reply(401, {"error": "Invalid credentials in Authorization header"})
        if method == "POST" and path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request.get('organization') or self.USER}/{request['name']}"
            if role != "write":
                return reply(403, {"error": "You don't have the rights to create a model under this namespace"})
            if repo_id in self.repos:
                return reply(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
            self.repos.add(repo_id)
            return reply(200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})
        if method == "POST" and path == "/api/validate-yaml":  # the card's metadata, as huggingface_hub parses it
            from huggingface_hub import ModelCard

            try:
                ModelCard(json.loads(body)["content"])
            except ValueError as error:
                return reply(400, {"errors": [{"message": str(error)}]})
            return reply(200, {"errors": [], "warnings": []})
        if repo is None or repo["repo"] not in self.repos:
            return reply(404, {"error": "Repository not found"})
        if method == "GET" and repo["rest"] == "auth-check/write":
            return reply(200, {}) if role == "write" else reply(403, {"error": "No write access"})
        if method == "POST" and repo["rest"].startswith("preupload/"):
            files = json.loads(body)["files"]
            return reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if method == "POST" and repo["rest"].startswith("commit/"):
            if role != "write":
                return reply(403, {"error": "No write access"})
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            commit = {"repo": repo["repo"], "message": lines[0]["value"]["summary"], "files": {}}
            for line in lines[1:]:
                assert line["key"] == "file" and line["value"]["encoding"] == "base64", line
                commit["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            self.commits.append(commit)
            oid = f"{len(self.commits):040x}"
            return reply(200, {"commitUrl": f"{self.url}/{repo['repo']}/commit/{oid}", "commitOid": oid})
        return reply(404, {"error": f"the stand-in hub does not serve {method} {path}"})


@pytest.fixture
def stand_in_hub():
    """A `StandInHub` serving on 127.0.0.1 for the test's duration."""
    hub = StandInHub()
    yield hub
    hub.close()


@pytest.fixture
def stand_in_hub_in_process(stand_in_hub, monkeypatch):
    """The `stand_in_hub`, made this process's Hub: huggingface_hub's endpoint pointed at it and offline mode off
    (what `HF_ENDPOINT` and `HF_HUB_OFFLINE=0` do for a new process; both are read when huggingface_hub is imported)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", stand_in_hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return stand_in_hub
