"""--push_to_hub end to end against a stand-in of the Hub on 127.0.0.1 (`HF_ENDPOINT`; no internet): the repository
is created and write access checked before the first step, the uploads hold the complete model folder (weights,
processor, card, model and pipeline code) and nothing of checkpoints, logs or samples unless --hub_strategy asks."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard

from lemart_hf.hub import LAST_CHECKPOINT, hub_code_files

ROOT_FILES = {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "train_results.json",
              "sample_grid.png"}  # fmt: skip


def pretrain(run_example, stand_in_hub, output_dir, tiny_config, photo_folder, *extra, check=True):
    """run_pretrain.py (2 steps, a checkpoint each) in a subprocess that talks to the stand-in hub."""
    args = [
        "--train_dir", str(photo_folder), "--model_config", tiny_config, "--resolution", "32", "--train_batch_size",
        "2", "--max_train_steps", "2", "--lr_warmup_steps", "1", "--checkpointing_steps", "1", "--validation_steps",
        "0", "--num_validation_composites", "2", "--dataloader_num_workers", "0", "--report_to", "tensorboard",
        "--output_dir", str(output_dir), "--push_to_hub", *extra,
    ]  # fmt: skip
    env = {"HF_ENDPOINT": stand_in_hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return run_example("run_pretrain.py", args, env=env, check=check)


def hub_api_requests(stand_in_hub) -> list[tuple]:
    """The requests of the upload, without huggingface_hub's own best-effort fetch of its agent registry."""
    return [request for request in stand_in_hub.requests if request[1] != "/api/agent-harnesses"]


def expected_files() -> set[str]:
    from lemart_hf import SwinIHForHarmonization

    return ROOT_FILES | set(hub_code_files(SwinIHForHarmonization))


def test_default_strategy_uploads_the_final_folder_once(tmp_path, tiny_config, photo_folder, run_example, stand_in_hub):
    output_dir = tmp_path / "tiny-lemart"
    pretrain(run_example, stand_in_hub, output_dir, tiny_config, photo_folder, "--hub_token", "hf_write")

    assert stand_in_hub.repos == {"tester/tiny-lemart"}
    calls = [(method, path) for method, path, _ in hub_api_requests(stand_in_hub)]
    assert calls == [
        ("POST", "/api/repos/create"),
        ("GET", "/api/models/tester/tiny-lemart/auth-check/write"),  # both before the run's first step
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/models/tester/tiny-lemart/preupload/main"),
        ("POST", "/api/models/tester/tiny-lemart/commit/main"),
    ]
    assert {token for *_, token in hub_api_requests(stand_in_hub)} == {"hf_write"}
    (commit,) = stand_in_hub.commits
    assert commit["message"] == "LEMaRT pre-training, step 2"
    assert set(commit["files"]) == expected_files()  # no checkpoint-*, logs/, samples/
    for name, content in commit["files"].items():
        assert content == (output_dir / name).read_bytes(), name
    assert (output_dir / "checkpoint-2").is_dir() and (output_dir / "logs").is_dir()  # kept locally
    card = ModelCard(commit["files"]["README.md"].decode())  # the name the repository got, not the folder's
    assert card.data.model_name == "tester/tiny-lemart" and 'pipeline(model="tester/tiny-lemart"' in card.text


def test_checkpoint_strategy_also_uploads_each_save_and_the_checkpoint(
    tmp_path, tiny_config, photo_folder, run_example, stand_in_hub
):
    output_dir = tmp_path / "run"
    pretrain(
        run_example, stand_in_hub, output_dir, tiny_config, photo_folder,
        "--hub_token", "hf_write", "--hub_model_id", "team/run", "--hub_strategy", "checkpoint",
    )  # fmt: skip
    assert stand_in_hub.repos == {"team/run"}
    messages = [commit["message"] for commit in stand_in_hub.commits]
    assert messages == [
        "Training in progress, step 1", "Checkpoint of step 1",
        "Training in progress, step 2", "Checkpoint of step 2",
        "LEMaRT pre-training, step 2",
    ]  # fmt: skip
    model_files = expected_files()
    for commit in stand_in_hub.commits[0:4:2]:  # the model as of the save; no sample grid before validation
        assert set(commit["files"]) == model_files - {"sample_grid.png"}
    assert set(stand_in_hub.commits[-1]["files"]) == model_files
    for commit, step in zip(stand_in_hub.commits[1::2], (1, 2)):
        files = set(commit["files"])
        assert all(name.startswith(f"{LAST_CHECKPOINT}/") for name in files)
        assert {f"{LAST_CHECKPOINT}/training_state.json", f"{LAST_CHECKPOINT}/model.safetensors"} <= files
        assert f'"global_step": {step}' in commit["files"][f"{LAST_CHECKPOINT}/training_state.json"].decode()


def test_a_read_only_token_stops_the_run_before_training(tmp_path, tiny_config, photo_folder, run_example, stand_in_hub):
    output_dir = tmp_path / "run"
    start = time.monotonic()
    result = pretrain(
        run_example, stand_in_hub, output_dir, tiny_config, photo_folder, "--hub_token", "hf_read", check=False
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("run_pretrain.py: error: --push_to_hub: cannot create or write to 'run' on http"), error
    assert "403" in error and "hf auth login" in error, error
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "model.safetensors").exists()
    assert stand_in_hub.commits == [] and stand_in_hub.repos == set()
    print(f"stopped after {elapsed:.1f} s: {error}", file=sys.stderr)


def test_open_hub_repo_creates_once_and_names_each_failure(tmp_path, stand_in_hub_in_process, monkeypatch):
    from huggingface_hub import constants

    from lemart_hf.training import open_hub_repo

    def args(token, **extra):
        return SimpleNamespace(push_to_hub=True, hub_model_id=None, output_dir=str(tmp_path / "model"),
                               hub_token=token, hub_private_repo=False, hub_strategy="end", **extra)  # fmt: skip

    main_process = SimpleNamespace(is_main_process=True)
    for _ in range(2):  # the second time the repository exists already: fine
        assert open_hub_repo(args("hf_write"), main_process).repo_id == "tester/model"
    assert open_hub_repo(SimpleNamespace(push_to_hub=False), main_process) is None
    with pytest.raises(SystemExit, match=r"error: --push_to_hub: cannot create or write to 'model' on .*401 Unauth"):
        open_hub_repo(args("hf_unknown"), main_process)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit, match="offline mode is enabled"):
        open_hub_repo(args("hf_write"), main_process)
    assert stand_in_hub_in_process.repos == {"tester/model"}
