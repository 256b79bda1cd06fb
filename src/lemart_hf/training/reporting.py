"""What a run records of itself: the command that started it (`command_line`), its summary for
train_results.json and the card (`run_summary`), the card's licence (`card_license`) and the final model folder
(`save_final_model`, through `lemart_hf.hub.save_hub_folder`)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from ..hub import save_hub_folder
from .checkpoints import TrainingState


def command_line(script: str, mixed_precision: str = "no") -> str:
    """The command that started this run, as one would type it. A ``mixed_precision`` the run used but its
    arguments do not name (it came from `accelerate launch --mixed_precision` or `accelerate config`) is written
    as a launcher flag, so that the command repeats the run."""
    arguments = sys.argv[1:]
    named = any(argument.split("=")[0] == "--mixed_precision" for argument in arguments)
    launcher = [] if named or mixed_precision == "no" else ["--mixed_precision", mixed_precision]
    return "accelerate launch " + shlex.join([*launcher, script, *arguments])


def run_summary(
    accelerator,
    model,
    state: TrainingState,
    max_train_steps: int,
    stopped_early: str | None,
    batches_per_epoch: int | None,
    train_seconds: float,
    images_at_start: int,
) -> dict:
    """What both scripts record of a run (train_results.json, the card): architecture, steps, epochs (None for a
    stream), images, processes, the mixed precision it ran in, the training hours of every invocation so far
    (``TrainingState.train_seconds``: validation left out), and this invocation's wall-clock time from the first step
    to now (validation included) and images per second (from ``images_at_start``)."""
    from ..models.architectures import architecture_of_config

    return {
        "architecture": architecture_of_config(accelerator.unwrap_model(model).config).name,
        "global_step": state.global_step,
        "max_train_steps": max_train_steps,
        "stopped_early": stopped_early,
        "epochs": state.epoch + state.batches_in_epoch / batches_per_epoch if batches_per_epoch else None,
        "images_seen": state.images_seen,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "train_hours": round(state.train_seconds / 3600, 6),
        "train_seconds_this_invocation": round(train_seconds, 1),
        "images_per_second_this_invocation": round((state.images_seen - images_at_start) / max(train_seconds, 1e-9), 3),
    }


def save_final_model(
    accelerator, model, image_processor, output_dir: str | os.PathLike, card: str, files: dict | None = None
) -> None:
    """The model folder of a run in ``output_dir`` (`hub.save_hub_folder`: weights, processor, model and pipeline
    code, ``card``, extra ``files``), written by the main process; call on every process.

    The weights are `Accelerator.get_state_dict` of the prepared ``model``: every process takes part, which gathers
    the parameters FSDP and DeepSpeed ZeRO-3 shard across them into the main process's full copy. They are saved
    from a plain model of the architecture, not from the prepared one, whose class FSDP replaces (the folder would
    carry FSDP's code instead of the model's).
    """
    from ..models.architectures import architecture_of_config

    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        plain = architecture_of_config(unwrapped.config).model_class(unwrapped.config).to(unwrapped.dtype)
        plain.load_state_dict(state_dict)
        save_hub_folder(output_dir, plain, image_processor, card, files=files)
    accelerator.wait_for_everyone()


def card_license(args: argparse.Namespace, data: str) -> dict[str, str]:
    """`model_card`'s ``license`` and ``license_reason`` for ``--license`` and the training data ``data``."""
    if args.license == "other":
        reason = (
            f"No licence was named for the weights (`--license`): they inherit the terms of the images they were "
            f"trained on ({data}). The code files are Apache-2.0, like lemart_hf."
        )
    else:
        reason = f"Named when training (`--license {args.license}`); the terms of the training images ({data}) apply too."
    return {"license": args.license, "license_reason": reason}
