"""``--push_to_hub``: the repository id (`default_hub_model_id`), the repository created and write access checked
before training (`open_hub_repo`), and the uploads at checkpoint saves (`upload_at_save`); the uploads
themselves are `lemart_hf.hub.HubRepo`'s."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..hub import HubRepo
from .accelerator import _prog

logger = logging.getLogger(__name__)


def default_hub_model_id(args: argparse.Namespace) -> str:
    return args.hub_model_id or Path(os.path.abspath(args.output_dir)).name


def open_hub_repo(args: argparse.Namespace, accelerator) -> HubRepo | None:
    """With ``--push_to_hub``: create the repository and check write access now, before any training (main
    process). On failure every process exits with one line naming the cause; returns None on the other processes
    and without ``--push_to_hub``."""
    if not args.push_to_hub:
        return None
    from accelerate.utils import broadcast_object_list
    from huggingface_hub import constants

    repo, error = None, None
    if accelerator.is_main_process:
        repo_id = default_hub_model_id(args)
        try:
            repo = HubRepo(repo_id, token=args.hub_token, private=args.hub_private_repo)
        except Exception as failure:  # noqa: BLE001  (the HTTP client's errors differ between huggingface_hub versions)
            lines = [line for line in str(failure).splitlines() if line.strip()] or [type(failure).__name__]
            cause = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"  # the status; the server's words
            error = (
                f"--push_to_hub: cannot create or write to {repo_id!r} on {constants.ENDPOINT}: {cause} (log in with "
                "`hf auth login` or pass --hub_token; a token needs write access)"
            )
    error = broadcast_object_list([error])[0]
    if error:
        raise SystemExit(f"{_prog()}: error: {error}")
    if repo is not None:
        logger.info(f"--push_to_hub: uploading to {repo.repo_id} ({args.hub_strategy} strategy)")
    return repo


def upload_at_save(
    repo: HubRepo | None, args: argparse.Namespace, save_model: Callable[[], object], checkpoint: Path, step: int
) -> None:
    """``--hub_strategy every_save`` / ``checkpoint``, after a checkpoint save: write the model folder as of now
    (``save_model()``, on every process) and upload it; with ``checkpoint`` the checkpoint too, as last-checkpoint/.
    An upload that fails here is logged and training goes on (the final upload sends everything again)."""
    if not args.push_to_hub or args.hub_strategy == "end":
        return
    save_model()
    if repo is None:
        return
    try:
        repo.upload_model(args.output_dir, f"Training in progress, step {step}")
        if args.hub_strategy == "checkpoint":
            repo.upload_checkpoint(checkpoint, f"Checkpoint of step {step}")
    except Exception as failure:  # noqa: BLE001  (as in open_hub_repo; a network error must not end the run)
        logger.warning(f"upload of step {step} to {repo.repo_id} failed, training goes on: {failure}")
