"""The `Accelerator` of a run (`make_accelerator`, its trackers from ``--report_to``), the checks on how the
script was launched (`check_launch`) and on what the launcher's engine settings would change
(`align_engine_settings`); `_prog`, the script's name that one-line error exits start with."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..cpu_features import cpu_has_fast_bf16

logger = logging.getLogger(__name__)


def resolve_report_to(report_to: str) -> list[str] | None:
    """``--report_to`` -> Accelerate's ``log_with``; tensorboard is dropped (with a warning) when not installed."""
    names = [n.strip() for n in report_to.split(",") if n.strip()]
    if not names or names == ["none"]:
        return None
    if names == ["all"]:
        return ["all"]
    if "tensorboard" in names:
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            logger.warning("tensorboard is not installed: not logging to it (`pip install tensorboard`)")
            names.remove("tensorboard")
    return names or None


def make_accelerator(args: argparse.Namespace):
    """An `Accelerator` for ``args``: project and logging folders, trackers, accumulation, mixed precision."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=resolve_report_to(args.report_to),
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
    )
    check_launch(accelerator)
    align_engine_settings(accelerator, args)
    return accelerator


def check_launch(accelerator) -> None:
    """Exit with a one-line error where Accelerate would quietly run something other than what was launched.

    - Processes started as a group (``WORLD_SIZE`` > 1) that Accelerate runs each on its own: on a machine without
      GPUs, ``accelerate launch --multi_gpu`` needs ``ACCELERATE_USE_CPU=1`` to form a gloo group; without it, every
      process would train alone and all of them would write the same output folder.
    - fp16 mixed precision on a CPU, which Accelerate ignores (training would run in float32).

    And warns where bf16 mixed precision would run on a CPU without native bf16 (slower than float32 there).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes == 1:
        raise SystemExit(
            f"{_prog()}: error: launched as {world_size} processes, but Accelerate runs each of them alone (they would "
            f"overwrite each other's outputs); without GPUs, launch with ACCELERATE_USE_CPU=1 accelerate launch "
            f"--multi_gpu --num_processes {world_size} ..."
        )
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise SystemExit(
            f"{_prog()}: error: fp16 mixed precision needs a GPU (on a CPU, Accelerate would quietly run in float32); "
            "use --mixed_precision bf16 or no"
        )
    if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_fast_bf16():
        logger.warning(
            "this CPU has no AVX512-BF16 or AMX: bf16 mixed precision is emulated here and likely slower than "
            "--mixed_precision no"
        )


#: DeepSpeed config entries that the script's arguments own: (entry, argument).
DEEPSPEED_ENTRIES = (
    ("train_micro_batch_size_per_gpu", "train_batch_size"),
    ("gradient_accumulation_steps", "gradient_accumulation_steps"),
    ("gradient_clipping", "max_grad_norm"),
)


def align_engine_settings(accelerator, args: argparse.Namespace) -> None:
    """Make the script's batch, accumulation and clipping arguments the ones the engine uses, or exit with a one-line
    error where the launcher set other values.

    The script's ``--gradient_accumulation_steps`` sizes the schedule, the logs and `TrainingState`; Accelerate
    takes ``ACCELERATE_GRADIENT_ACCUMULATION_STEPS`` (which `accelerate launch` exports from a DeepSpeed config or
    its ``--gradient_accumulation_steps``) over it, and DeepSpeed takes its config's value over both. Which one a
    user meant cannot be known, and either silently changes the batch per step and the learning-rate schedule, so
    a disagreement is an error (as in transformers' Trainer, which refuses a DeepSpeed config that contradicts its
    arguments); the ready configs in examples/accelerate_configs/ leave these entries to the script.

    With DeepSpeed, the config's ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps`` and
    ``gradient_clipping`` entries that are ``"auto"`` (or absent) are set from ``--train_batch_size``,
    ``--gradient_accumulation_steps`` and ``--max_grad_norm`` (0: no clipping in both), so `Accelerator.prepare`
    does not need the training DataLoader to fill the batch size in; entries with other values must agree.
    """
    from accelerate.utils import DistributedType

    problems = []
    if accelerator.gradient_accumulation_steps != args.gradient_accumulation_steps:
        problems.append(
            f"--gradient_accumulation_steps is {args.gradient_accumulation_steps} but the launcher set "
            f"{accelerator.gradient_accumulation_steps} (ACCELERATE_GRADIENT_ACCUMULATION_STEPS, from the accelerate "
            "config's gradient_accumulation_steps or accelerate launch --gradient_accumulation_steps)"
        )
    elif accelerator.distributed_type == DistributedType.DEEPSPEED:
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        for entry, name in DEEPSPEED_ENTRIES:
            wanted, current = getattr(args, name), config.get(entry, "auto")
            if current == "auto":
                config[entry] = wanted
            elif float(current) != float(wanted):
                problems.append(f"--{name} is {wanted} but the DeepSpeed config's {entry} is {current}")
    if problems:
        raise SystemExit(
            f"{_prog()}: error: {'; '.join(problems)}. Give both the same value, or leave it out of the config "
            "(or set it to auto) so that the script's argument is used"
        )


def _prog() -> str:
    """The running script's name, as argparse starts its error lines."""
    return os.path.basename(sys.argv[0]) or "lemart_hf"
