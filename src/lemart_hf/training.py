"""What the example training scripts share: arguments, model and optimiser set-up, exact resumption, atomic
checkpoints, sample grids, the model folder and the Hub upload (the folder, card and upload themselves: `hub`).

`examples/run_pretrain.py` (LEMaRT pre-training) and `examples/run_finetune.py` (fine-tuning on iHarmony4-layout
data) write their training loops out in full; this module holds the parts that would otherwise be copied
between them. Nothing here is specific to one script.

Exact resumption rests on three things:

- the data position: each `checkpoint-{step}` records the epoch and how many batches of it were consumed; the
  shuffling and the per-sample crops are functions of (seed, epoch, key) only (`lemart_hf.data.photos`), so the
  resumed run skips those batches and sees exactly what the uninterrupted run saw;
- the randomness of each training step: the LEMaRT composer draws from `generator_for_step(seed, n)` and the
  model's own randomness (stochastic depth) from the global RNG reseeded with `step_seed(seed, n, process)` before
  every micro-batch ``n``, so no random state carries over from step to step;
- model, optimizer, scheduler and gradient scaler through `Accelerator.save_state` / `load_state`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from .hub import HUB_STRATEGIES, HubRepo, save_hub_folder
from .stopping import StopRequest, ignore_stop_signals

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
#: Written last into a checkpoint, before the folder gets its final name: its presence marks a complete one.
TRAINING_STATE_FILE = "training_state.json"
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_PARTIAL_SUFFIXES = (".tmp", ".trash")


# ======================================================================================================
# Arguments


def add_model_arguments(parser: argparse.ArgumentParser, *, default_loss: str) -> None:
    from .models.architectures import ARCHITECTURES

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model_type",
        choices=sorted(ARCHITECTURES),
        default=None,
        help="Architecture trained from scratch (ignored with --model_name_or_path): swinih (the paper's SwinIH), vit, "
        "resnet_generator (pix2pixHD without downsampling), hrnet, harmony_transformer (HT+). Default: the "
        "architecture of --model_config, else swinih.",
    )
    group.add_argument(
        "--model_config",
        default=None,
        help="A preset name (default: the --model_type's paper-size one, e.g. swinih-base; swinih-tiny, vit-tiny, "
        "resnet-generator-tiny, hrnet-tiny, harmony-transformer-tiny train on CPUs; a preset also selects its "
        "architecture), or a path to a config JSON file or a folder with config.json. Ignored with "
        "--model_name_or_path.",
    )
    group.add_argument(
        "--model_name_or_path",
        default=None,
        help="Start from these weights: a folder written by save_pretrained (e.g. a pre-training run's "
        "--output_dir) or a Hub model id. Default: random initialisation from --model_config.",
    )
    group.add_argument(
        "--loss_type",
        choices=["mse", "fn_mse"],
        default=default_loss,
        help="Training loss: mse (LEMaRT pre-training) or fn_mse (foreground-normalized MSE, fine-tuning).",
    )
    group.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")


def add_training_arguments(
    parser: argparse.ArgumentParser, *, learning_rate: float, num_train_epochs: int, train_batch_size: int
) -> None:
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--resolution", type=int, default=256, help="Side of the square training crops, in pixels (at least 8)."
    )
    group.add_argument("--train_batch_size", type=int, default=train_batch_size, help="Batch size per process.")
    group.add_argument(
        "--num_train_epochs", type=int, default=num_train_epochs, help="Epochs, unless --max_train_steps is given."
    )
    group.add_argument(
        "--max_train_steps", type=int, default=None, help="Optimizer steps in total; overrides --num_train_epochs."
    )
    group.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Batches per optimizer step.")
    group.add_argument(
        "--learning_rate",
        type=float,
        default=learning_rate,
        help=f"Peak learning rate of AdamW (default {learning_rate:g}; see --scale_lr).",
    )
    group.add_argument(
        "--scale_lr",
        action="store_true",
        help="Multiply --learning_rate by total batch size / 64 (batch per process x processes x accumulation).",
    )
    group.add_argument(
        "--lr_scheduler",
        default="cosine",
        choices=["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"],
        help="Schedule after warm-up; cosine decays to 0 at the last step (paper).",
    )
    group.add_argument(
        "--lr_warmup_steps", type=int, default=None, help="Linear warm-up steps (default: 5%% of the training steps)."
    )
    group.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1 (paper: 0.9).")
    group.add_argument("--adam_beta2", type=float, default=0.95, help="AdamW beta2 (paper: 0.95).")
    group.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon (paper: 1e-8).")
    group.add_argument(
        "--adam_weight_decay",
        type=float,
        default=0.05,
        help="AdamW weight decay (paper: 0.05); biases, norms and position-bias tables get none.",
    )
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm; 0 disables it.")
    group.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default=None,
        help="Overrides `accelerate config` / `accelerate launch --mixed_precision`. bf16 on recent GPUs.",
    )
    group.add_argument(
        "--allow_tf32", action="store_true", help="Allow TF32 matrix multiplies on Ampere+ GPUs (faster fp32)."
    )
    group.add_argument("--seed", type=int, default=0, help="Seeds initialisation, data order, crops and composites.")
    group.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=2,
        help="Processes that decode and crop images (0: in the main process). Use more on a GPU machine.",
    )
    group.add_argument(
        "--time_budget_minutes",
        type=float,
        default=None,
        help="Stop cleanly after this many minutes of training in this invocation (set-up excluded): a checkpoint "
        "and the final model are saved. The schedule still follows --max_train_steps. A first SIGTERM or Ctrl-C "
        "stops the same way.",
    )


def add_checkpointing_arguments(parser: argparse.ArgumentParser, *, default_output_dir: str) -> None:
    group = parser.add_argument_group("checkpoints and output")
    group.add_argument(
        "--output_dir", default=default_output_dir, help="Final model, model card, checkpoints, logs and samples."
    )
    group.add_argument(
        "--checkpointing_steps", type=int, default=500, help="Save a resumable checkpoint-{step} every N steps."
    )
    group.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints (oldest go)."
    )
    group.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="'latest' (the newest complete checkpoint in --output_dir; starts afresh when there is none) or a "
        "checkpoint folder. Resumes model, optimizer, scheduler, RNG and data position exactly.",
    )


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging and validation")
    group.add_argument(
        "--report_to",
        default="tensorboard",
        help="Accelerate trackers: tensorboard (default, when installed), wandb, all, none, or a comma list.",
    )
    group.add_argument("--logging_dir", default="logs", help="Tracker folder, relative to --output_dir.")
    group.add_argument("--tracker_project_name", default=None, help="Run name for the trackers (default: the script).")
    group.add_argument("--logging_steps", type=int, default=10, help="Log loss, lr and throughput every N steps.")
    group.add_argument(
        "--validation_steps",
        type=int,
        default=500,
        help="Validate and save a sample grid every N steps (and at the end); 0: only at the end.",
    )
    group.add_argument("--num_sample_rows", type=int, default=4, help="Rows (examples) in each sample grid.")


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Hugging Face Hub")
    group.add_argument(
        "--push_to_hub",
        action="store_true",
        help="Upload the model folder (weights, processor, model and pipeline code, card; no checkpoints or logs) "
        "to the Hub. The repository is created and write access checked before training starts. To upload a "
        "folder later instead: `hf upload REPO_ID OUTPUT_DIR --exclude 'checkpoint-*' --exclude 'logs/*' --exclude "
        "'samples/*'`.",
    )
    group.add_argument(
        "--hub_strategy",
        choices=HUB_STRATEGIES,
        default="end",
        help="When to upload (as transformers' Trainer): end = the final model only; every_save = also the model "
        "as of every checkpoint save; checkpoint = that plus the checkpoint itself, as last-checkpoint/.",
    )
    group.add_argument("--hub_model_id", default=None, help="Repository id (default: the --output_dir folder name).")
    group.add_argument(
        "--hub_token", default=None, help="Token (default: HF_TOKEN or the one saved by `hf auth login`)."
    )
    group.add_argument("--hub_private_repo", action="store_true", help="Create the repository as private.")
    group.add_argument(
        "--license",
        default="other",
        help="Licence of the weights in the model card, a Hub licence id (e.g. apache-2.0, cc-by-nc-4.0); default "
        "other: the card says they inherit the terms of the training images.",
    )


def check_training_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`parser.error` (exit code 2, a one-line message) for values no run can use."""
    from .models.swinih.image_processing_swinih import MIN_WORKING_SIZE

    if args.resolution < MIN_WORKING_SIZE:
        parser.error(f"--resolution must be >= {MIN_WORKING_SIZE} (the smallest working size), got {args.resolution}")
    positive = ["train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "logging_steps"]
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        parser.error(f"--max_train_steps must be >= 1, got {args.max_train_steps}")
    if args.max_train_steps is None and args.num_train_epochs < 1:
        parser.error(f"--num_train_epochs must be >= 1, got {args.num_train_epochs}")
    if not args.learning_rate > 0:
        parser.error(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.lr_warmup_steps is not None and args.lr_warmup_steps < 0:
        parser.error(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}")
    if args.max_grad_norm < 0:
        parser.error(f"--max_grad_norm must be >= 0, got {args.max_grad_norm}")
    if args.dataloader_num_workers < 0:
        parser.error(f"--dataloader_num_workers must be >= 0, got {args.dataloader_num_workers}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        parser.error(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    if args.validation_steps < 0:
        parser.error(f"--validation_steps must be >= 0, got {args.validation_steps}")
    if args.time_budget_minutes is not None and not args.time_budget_minutes > 0:
        parser.error(f"--time_budget_minutes must be > 0, got {args.time_budget_minutes}")
    if args.hub_strategy != "end" and not args.push_to_hub:
        parser.error(f"--hub_strategy {args.hub_strategy} uploads with --push_to_hub, which is not given")
    if problem := output_dir_problem(args.output_dir):
        parser.error(f"--output_dir {args.output_dir!r} {problem}")
    if args.model_name_or_path is None:
        try:
            config = resolve_model_config(args.model_config, args.model_type)
        except (ValueError, OSError) as error:
            parser.error(f"--model_config: {error}")
        if args.model_config is None:  # named in logs and model cards
            args.model_config = config.__class__.default_preset
    else:
        problem = model_path_problem(args.model_name_or_path)
        if problem:
            parser.error(f"--model_name_or_path {args.model_name_or_path!r} {problem}")
    if args.resume_from_checkpoint not in (None, "latest") and not is_complete_checkpoint(args.resume_from_checkpoint):
        parser.error(
            f"--resume_from_checkpoint {args.resume_from_checkpoint!r} is not a complete checkpoint folder "
            f"(one named {CHECKPOINT_PREFIX}<step> holding {TRAINING_STATE_FILE}); use 'latest' or a path"
        )


def output_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot take a run's outputs (a file, or a folder this user cannot write, or one that cannot be
    created there); None when it can. Creates nothing.

    Checked before any work, so that such a folder stops a run at once rather than when it first saves.
    """
    path = Path(os.path.abspath(path))
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))
    if not existing.is_dir():
        return "is a file, not a folder" if existing == path else f"cannot be created: {str(existing)!r} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return "is not writable" if existing == path else f"cannot be created in the read-only {str(existing)!r}"
    return None


def model_path_problem(name_or_path: str) -> str | None:
    """Why ``name_or_path`` cannot be a saved model, where that is clear before loading it; None otherwise.

    A local path must be a folder with a ``config.json`` and readable weights (every ``*.safetensors`` file's header
    is read: a truncated or corrupt file is named; or a ``pytorch_model.bin``); anything else is taken for a Hub id
    ("user/model") and checked on loading. A training checkpoint is named as such: it holds training state, not a
    loadable model.
    """
    path = os.path.expanduser(name_or_path)
    if not (name_or_path.startswith(("/", "./", "../", "~")) or os.path.exists(path)):
        return None
    if not os.path.isdir(path):
        return "is not a directory"
    if is_complete_checkpoint(path):
        return (
            "is a training checkpoint, not a saved model: continue its run with --resume_from_checkpoint, or use "
            f"the model the run saved in {os.path.dirname(os.path.abspath(path))!r}"
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        return "holds no config.json (not a saved model folder)"
    return _weights_problem(path)


def _weights_problem(folder: str) -> str | None:
    from safetensors import SafetensorError, safe_open

    weights = sorted(Path(folder).glob("*.safetensors"))
    if not weights:
        return None if os.path.isfile(os.path.join(folder, "pytorch_model.bin")) else "holds no model.safetensors"
    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            return f"has a corrupt or truncated {file.name} ({error})"
    return None


# ======================================================================================================
# Accelerator, model, optimiser


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
    return accelerator


def check_launch(accelerator) -> None:
    """Exit with a one-line error where Accelerate would quietly run something other than what was launched.

    - Processes started as a group (``WORLD_SIZE`` > 1) that Accelerate runs each on its own: on a machine without
      GPUs, ``accelerate launch --multi_gpu`` needs ``ACCELERATE_USE_CPU=1`` to form a gloo group; without it, every
      process would train alone and all of them would write the same output folder.
    - fp16 mixed precision on a CPU, which Accelerate ignores (training would run in float32).
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


def _prog() -> str:
    """The running script's name, as argparse starts its error lines."""
    return os.path.basename(sys.argv[0]) or "lemart_hf"


def resolve_model_config(name_or_path: str | None, model_type: str | None = None, **overrides):
    """A preset name, a config JSON file or a folder with config.json -> the architecture's config.

    Args:
        name_or_path: a preset of any architecture (e.g. ``"swinih-tiny"``, ``"vit-tiny"``), a path, or None for
            the default preset of ``model_type``.
        model_type: an architecture of `lemart_hf.models.architectures.ARCHITECTURES`; when given, the preset or
            file must be of that architecture.
        overrides: config attributes to set.
    Raises:
        ValueError: unknown preset or model type, a file of another architecture, or a path that does not exist.
    """
    from .models.architectures import ARCHITECTURES, architecture_of_preset, get_architecture

    wanted = get_architecture(model_type) if model_type is not None else None
    if name_or_path is None:
        arch = wanted or ARCHITECTURES["swinih"]
        return arch.config_class.from_preset(arch.config_class.default_preset, **overrides)
    arch = architecture_of_preset(name_or_path)
    if arch is None:
        path = Path(name_or_path)
        if path.is_dir() and (path / "config.json").is_file():
            path = path / "config.json"
        if not path.is_file():
            presets = sorted(p for a in ARCHITECTURES.values() for p in a.presets)
            raise ValueError(f"{name_or_path!r} is neither a preset ({', '.join(presets)}) nor a config file/folder")
        saved_type = json.loads(path.read_text()).get("model_type")
        if saved_type is None:  # a hand-written file: the architecture asked for, else SwinIH
            arch = wanted or ARCHITECTURES["swinih"]
        else:
            matches = [a for a in ARCHITECTURES.values() if a.config_class.model_type == saved_type]
            if not matches:
                raise ValueError(f"{str(path)!r} has model_type {saved_type!r}, not one of lemart_hf's architectures")
            arch = matches[0]
        config = arch.config_class.from_json_file(str(path))
        for key, value in overrides.items():
            setattr(config, key, value)
    else:
        config = arch.config_class.from_preset(name_or_path, **overrides)
    if wanted is not None and arch is not wanted:
        raise ValueError(f"{name_or_path!r} is a {arch.name} config, but --model_type is {wanted.name}")
    return config


def load_model(args: argparse.Namespace):
    """The model to train and its image processor (working size ``--resolution``).

    From ``--model_name_or_path`` (any architecture registered with `AutoModelForImageToImage`) or a fresh model of
    ``--model_type`` / ``--model_config``. The config's ``loss_type`` is set to ``--loss_type``. A model that
    cannot be loaded exits with a one-line error.
    """
    from transformers import AutoImageProcessor, AutoModelForImageToImage

    from .models.architectures import architecture_of_config
    from .models.swinih import SwinIHImageProcessor

    from safetensors import SafetensorError

    size = {"height": args.resolution, "width": args.resolution}
    if args.model_name_or_path is not None:
        try:
            model = AutoModelForImageToImage.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, SafetensorError) as error:
            raise SystemExit(f"{_prog()}: error: --model_name_or_path could not be loaded: {error}") from error
        try:
            image_processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
            image_processor.size = size
        except (OSError, ValueError):
            image_processor = SwinIHImageProcessor(size=size)
    else:
        config = resolve_model_config(args.model_config, getattr(args, "model_type", None))
        model = architecture_of_config(config).model_class(config)
        image_processor = SwinIHImageProcessor(size=size)
    model.config.loss_type = args.loss_type
    if args.gradient_checkpointing:  # transformers >= 5.2x renamed it
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model, image_processor


def build_optimizer(model: torch.nn.Module, args: argparse.Namespace, learning_rate: float) -> torch.optim.AdamW:
    """AdamW (paper: betas 0.9/0.95, eps 1e-8, weight decay 0.05); no decay on biases, norms, position-bias tables."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or "position_bias" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": args.adam_weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def effective_learning_rate(args: argparse.Namespace, num_processes: int) -> float:
    """``--learning_rate``, times total batch / 64 with ``--scale_lr``."""
    total = args.train_batch_size * num_processes * args.gradient_accumulation_steps
    return args.learning_rate * total / 64 if args.scale_lr else args.learning_rate


def warmup_steps(args: argparse.Namespace, max_train_steps: int) -> int:
    return args.lr_warmup_steps if args.lr_warmup_steps is not None else round(0.05 * max_train_steps)


def build_scheduler(optimizer, args: argparse.Namespace, max_train_steps: int, num_processes: int):
    """``--lr_scheduler`` with warm-up, counted in optimizer steps.

    Accelerate's prepared scheduler advances ``num_processes`` times per optimizer step, so the step counts are
    scaled by it (as in diffusers' scripts).
    """
    from transformers import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps(args, max_train_steps) * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


# ======================================================================================================
# Reproducibility


def step_seed(seed: int, step: int, process_index: int = 0) -> int:
    """A 63-bit seed for micro-batch ``step`` of process ``process_index`` in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, step, process_index, 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> 1)


def composite_generator(seed: int, state, accelerator, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of the composites of this micro-batch of this process (LEMaRT pre-training, the self-supervised
    samples of fine-tuning): it depends on (seed, micro-batch, process) alone, so a resumed run draws exactly the
    composites the uninterrupted run drew."""
    from .lemart import generator_for_step

    stream = state.micro_step * accelerator.num_processes + accelerator.process_index
    return generator_for_step(seed, stream, device=device)


def seed_for_step(seed: int, step: int, process_index: int = 0) -> None:
    """Reseed torch's global RNG (all devices) for one micro-batch, so its randomness does not depend on history."""
    torch.manual_seed(step_seed(seed, step, process_index))


# ======================================================================================================
# Checkpoints


@dataclasses.dataclass
class TrainingState:
    """Where a run is. Saved into every checkpoint as ``training_state.json``.

    Attributes:
        global_step: optimizer steps done.
        epoch: the epoch in progress.
        batches_in_epoch: batches (per process) of that epoch already consumed.
        micro_step: batches (per process) consumed since the start; numbers the composer's and the model's RNG.
        images_seen: training images consumed, all processes together.
        run: settings a resumed run must share for exactness (batch size, processes, seed, ...).
        generation: set by `CheckpointManager.save`: which run (process start) in the folder wrote the checkpoint.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    micro_step: int = 0
    images_seen: int = 0
    run: dict = dataclasses.field(default_factory=dict)
    generation: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a folder named ``checkpoint-{step}``; None for any other name (``.tmp`` ones included)."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """A folder named ``checkpoint-{step}`` that holds its training state (written last, before the rename)."""
    path = Path(path)
    return path.is_dir() and checkpoint_step(path) is not None and (path / TRAINING_STATE_FILE).is_file()


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (so a power cut cannot reorder the rename)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, read-only folder); the message names it and the cause."""


class CheckpointManager:
    """Atomic ``checkpoint-{step}`` folders in ``output_dir``, at most ``total_limit`` of them.

    A checkpoint is written into ``checkpoint-{step}.tmp``; its training state goes in last, everything is
    flushed to disk, and only then is the folder renamed to ``checkpoint-{step}`` (an atomic rename). A run killed
    while saving leaves a ``.tmp`` folder, which nothing mistakes for a checkpoint and the next run deletes.
    Old checkpoints are renamed to ``.trash`` before being deleted, for the same reason.

    Checkpoints are ordered by the run that wrote them, then by step: each manager (one per run) takes the
    generation after the highest one in the folder. So after resuming from an earlier checkpoint (say step 4 of a
    run that went on to step 8), the new run's checkpoints are the newest: "latest" finds them, and rotation deletes
    the older run's checkpoints (4, then 8) before any of them. The order lives in the training states, so copying
    a folder keeps it.
    """

    def __init__(self, output_dir: str | os.PathLike, total_limit: int | None = None):
        self.output_dir = Path(output_dir)
        self.total_limit = total_limit
        self.generation = 1 + max((_generation(p) for p in self.complete()), default=-1)

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first: by the generation of the run that wrote them, then by step."""
        if not self.output_dir.is_dir():
            return []
        found = [p for p in self.output_dir.iterdir() if is_complete_checkpoint(p)]
        return sorted(found, key=lambda path: (_generation(path), checkpoint_step(path)))

    def latest(self) -> Path | None:
        complete = self.complete()
        return complete[-1] if complete else None

    def resolve(self, resume_from_checkpoint: str | None) -> Path | None:
        """``None`` -> None; ``"latest"`` -> the newest complete checkpoint or None; a path -> that checkpoint.

        Raises:
            FileNotFoundError: the path is not a complete checkpoint.
        """
        if resume_from_checkpoint is None:
            return None
        if resume_from_checkpoint == "latest":
            return self.latest()
        path = Path(resume_from_checkpoint)
        if not is_complete_checkpoint(path):
            raise FileNotFoundError(f"{str(path)!r} is not a complete checkpoint folder")
        return path

    def remove_partial(self) -> list[Path]:
        """Delete ``.tmp`` / ``.trash`` leftovers of interrupted saves and deletions; returns what was removed."""
        removed = []
        if self.output_dir.is_dir():
            for path in self.output_dir.iterdir():
                if path.name.startswith(CHECKPOINT_PREFIX) and path.name.endswith(_PARTIAL_SUFFIXES):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed

    def save(self, accelerator, state: TrainingState, extra_files: dict[str, str] | None = None) -> Path:
        """Save the accelerator's state plus ``state`` as ``checkpoint-{state.global_step}``; call on every process.

        Returns the final path. Rotates old checkpoints when a limit is set.

        Raises:
            CheckpointWriteError: the save failed (full disk, quota, read-only folder); the ``.tmp`` folder is gone
                and the previous checkpoints are as they were.
        """
        final = self.output_dir / f"{CHECKPOINT_PREFIX}{state.global_step}"
        temporary = final.with_name(final.name + ".tmp")
        try:
            if accelerator.is_main_process:
                shutil.rmtree(temporary, ignore_errors=True)
                temporary.mkdir(parents=True)
            accelerator.wait_for_everyone()
            accelerator.save_state(str(temporary))
            accelerator.wait_for_everyone()  # every process has written its RNG state
            if accelerator.is_main_process:
                for name, text in (extra_files or {}).items():
                    (temporary / name).write_text(text, encoding="utf-8")
                written = dataclasses.replace(state, generation=self.generation)
                (temporary / TRAINING_STATE_FILE).write_text(written.to_json(), encoding="utf-8")
                _fsync_tree(temporary)
        except BaseException as error:  # a full disk, or a second Ctrl-C: leave no partial checkpoint behind
            if accelerator.is_main_process:
                shutil.rmtree(temporary, ignore_errors=True)
            if isinstance(error, Exception):  # OSError, or how safetensors / torch.save report a failed write
                cause = " ".join(str(error).split()) or type(error).__name__
                where = f"{final.name} into {str(self.output_dir)!r}"
                raise CheckpointWriteError(f"could not write {where}: {cause}") from error
            raise
        if accelerator.is_main_process:
            if final.exists():  # the same step saved before (e.g. a restarted run): replace it
                self._discard(final)
            os.replace(temporary, final)
            _fsync_dir(self.output_dir)
            self.rotate()
        accelerator.wait_for_everyone()
        return final

    def rotate(self) -> list[Path]:
        """Delete the oldest complete checkpoints beyond ``total_limit``; returns the deleted paths."""
        if self.total_limit is None:
            return []
        complete = self.complete()
        excess = complete[: max(0, len(complete) - self.total_limit)]
        for path in excess:
            self._discard(path)
        if excess:
            logger.info("removed %d old checkpoint(s): %s", len(excess), ", ".join(p.name for p in excess))
        return excess

    @staticmethod
    def _discard(path: Path) -> None:
        trash = path.with_name(path.name + ".trash")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _generation(checkpoint: Path) -> int:
    """The generation recorded in a complete checkpoint (0 for ones saved before generations, or unreadable)."""
    try:
        return int(load_training_state(checkpoint).generation)
    except (OSError, ValueError, TypeError):
        return 0


def load_training_state(checkpoint: str | os.PathLike) -> TrainingState:
    return TrainingState.from_json((Path(checkpoint) / TRAINING_STATE_FILE).read_text(encoding="utf-8"))


def warn_on_run_mismatch(saved: dict, current: dict) -> list[str]:
    """Settings that differ between the checkpoint's run and this one (they break exact resumption); logged."""
    differences = [f"{k}: {saved[k]!r} -> {current.get(k)!r}" for k in sorted(saved) if saved[k] != current.get(k)]
    if differences:
        logger.warning("resuming with different settings; the run will not be exact: %s", "; ".join(differences))
    return differences


# ======================================================================================================
# Loop helpers


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and what was saved."""


class Throughput:
    """Images per second between two calls of `rate`."""

    def __init__(self):
        self.last_time = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.images / max(now - self.last_time, 1e-9)
        self.last_time, self.images = now, 0
        return rate


def stop_signals(accelerator, loss: torch.Tensor, stop_requested: bool) -> tuple[torch.Tensor, bool, bool]:
    """One gather per micro-batch: every process's loss and whether it was asked to stop (`StopRequest`).

    Returns (losses (num_processes,), any loss non-finite, any process asked to stop), the same on every process,
    so all of them stop at the same step.
    """
    local = torch.stack([loss.detach().float().reshape(()), torch.tensor(float(stop_requested), device=loss.device)])
    gathered = accelerator.gather(local[None]).reshape(-1, 2)
    losses = gathered[:, 0]
    return losses, not bool(torch.isfinite(losses).all()), bool(gathered[:, 1].any())


def backward_and_step(
    accelerator,
    model,
    optimizer,
    lr_scheduler,
    loss: torch.Tensor,
    state: TrainingState,
    stop: StopRequest,
    max_grad_norm: float,
) -> tuple[torch.Tensor, bool]:
    """The rest of a micro-step after the forward pass, inside ``accelerator.accumulate(model)``.

    Gathers every process's loss and stop request (`stop_signals`), raises `NonFiniteLossError` (naming the step)
    before a non-finite loss reaches the weights, then backward, gradient clipping (``max_grad_norm`` > 0) on the
    steps that update, optimizer and scheduler step. Returns (losses (num_processes,), any process asked to stop).
    """
    losses, non_finite, stop_requested = stop_signals(accelerator, loss, stop.requested())
    if non_finite:
        shown = losses.tolist() if len(losses) > 1 else float(losses[0])
        raise NonFiniteLossError(
            f"the loss is {shown} at step {state.global_step + 1} "
            f"(epoch {state.epoch}, batch {state.batches_in_epoch + 1})"
        )
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return losses, stop_requested


def exit_on_non_finite_loss(
    error: NonFiniteLossError, accelerator, checkpoints: CheckpointManager, last_good: TrainingState
) -> NoReturn:
    """Save the state after the last good step (unless this run saved it already) and exit with what to do next."""
    saved = checkpoints.output_dir / f"{CHECKPOINT_PREFIX}{last_good.global_step}"
    if not (is_complete_checkpoint(saved) and _generation(saved) == checkpoints.generation):
        saved = checkpoints.save(accelerator, last_good)
    accelerator.end_training()
    raise SystemExit(
        f"{_prog()}: error: stopping, {error}. The model, optimizer and data position after the last good step "
        f"({last_good.global_step}) are in {saved}. Lower --learning_rate, keep --max_grad_norm on, or use "
        f"--mixed_precision no / bf16 instead of fp16; then resume with --resume_from_checkpoint {saved}."
    ) from None


def dataloader_kwargs(args: argparse.Namespace, *, pin_memory: bool, persistent: bool = True) -> dict:
    """Worker settings shared by the training DataLoaders (workers kept across epochs when ``persistent``)."""
    workers = args.dataloader_num_workers
    kwargs = {"num_workers": workers, "pin_memory": pin_memory}
    if workers > 0:
        kwargs.update(persistent_workers=persistent, prefetch_factor=4, worker_init_fn=ignore_stop_signals)
    return kwargs


# ======================================================================================================
# Labeled pairs (fine-tuning)


class HarmonizationTrainingPairs(torch.utils.data.Dataset):
    """`lemart_hf.data.load_iharmony4` rows -> random training crops, keyed like `lemart_hf.data.photos.PhotoDataset`.

    ``dataset[key]`` reads row ``key % len(dataset)`` and applies ONE random resized crop and flip to its composite,
    mask and real image alike (`lemart_hf.data.random_resized_crop_flip`, drawn from a generator keyed by
    ``(seed, key)``), resized to ``resolution``; the mask is then thresholded at 0.5 (binary, as the default
    evaluation protocol has it). Returns ``{"composite" (3, R, R), "mask" (1, R, R), "real" (3, R, R)`` float in
    [0, 1], ``"key"}``. Use it with `lemart_hf.data.photos.EpochShuffleSampler` for exact resumption.
    """

    def __init__(
        self,
        dataset,
        resolution: int,
        *,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        binary_mask: bool = True,
    ):
        from .data.iharmony4 import without_image_decoding

        if len(dataset) == 0:
            raise ValueError("no training pairs")
        self.dataset = without_image_decoding(dataset)  # decoded by example_to_tensors, which names unreadable files
        self.resolution = resolution
        self.seed = seed
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.binary_mask = binary_mask

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> dict:
        from .data.iharmony4 import example_to_tensors, random_resized_crop_flip
        from .data.photos import keyed_generator

        key = int(key)
        tensors = example_to_tensors(self.dataset[key % len(self)])
        tensors = random_resized_crop_flip(
            tensors,
            (self.resolution, self.resolution),
            scale=self.crop_scale,
            hflip_p=0.5 if self.hflip else 0.0,
            generator=keyed_generator(self.seed, key),
        )
        mask = (tensors["mask"] > 0.5).float() if self.binary_mask else tensors["mask"].clamp(0, 1)
        return {
            "composite": tensors["composite"].clamp(0, 1),
            "mask": mask,
            "real": tensors["real"].clamp(0, 1),
            "key": key,
        }


def collate_pairs(samples: list[dict]) -> dict[str, torch.Tensor]:
    """`HarmonizationTrainingPairs` samples -> ``{"pixel_values" (B, 4, R, R), "labels" (B, 3, R, R), "mask", "key"}``."""
    composite = torch.stack([s["composite"] for s in samples])
    mask = torch.stack([s["mask"] for s in samples])
    return {
        "pixel_values": torch.cat([composite, mask], dim=1),
        "labels": torch.stack([s["real"] for s in samples]),
        "mask": mask,
        "key": torch.tensor([s["key"] for s in samples], dtype=torch.long),
    }


# ======================================================================================================
# Sample grids


def make_sample_grid(
    composite: torch.Tensor,
    mask: torch.Tensor,
    prediction: torch.Tensor,
    original: torch.Tensor,
    *,
    max_rows: int = 4,
    header: bool = True,
):
    """One PIL image: a row per example with the columns composite | mask | prediction | original.

    Args:
        composite, prediction, original: (B, 3, H, W) in [0, 1].
        mask: (B, 1, H, W) in [0, 1].
        max_rows: the first ``max_rows`` examples.
        header: a strip naming the columns (when the tiles are at least 48 pixels wide).
    """
    from PIL import Image, ImageDraw

    rows = min(max_rows, composite.shape[0])
    tiles = [composite[:rows], mask[:rows].expand(-1, 3, -1, -1), prediction[:rows], original[:rows]]
    tiles = [t.detach().float().cpu().clamp(0, 1) for t in tiles]
    _, _, height, width = tiles[0].shape
    gap = 2
    grid = torch.ones(3, rows * height + (rows - 1) * gap, 4 * width + 3 * gap)
    for column, tile in enumerate(tiles):
        for row in range(rows):
            top, left = row * (height + gap), column * (width + gap)
            grid[:, top : top + height, left : left + width] = tile[row]
    image = Image.fromarray((grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    if not header or width < 48:
        return image
    strip = 14
    framed = Image.new("RGB", (image.width, image.height + strip), "white")
    framed.paste(image, (0, strip))
    draw = ImageDraw.Draw(framed)
    for column, label in enumerate(("composite", "mask", "prediction", "original")):
        draw.text((column * (width + gap) + 2, 1), label, fill=(0, 0, 0))
    return framed


def log_sample_grid(accelerator, grid, step: int, tag: str = "samples") -> None:
    """Send a grid (PIL image) to the trackers that take images (tensorboard, wandb); main process only."""
    array = np.asarray(grid)
    for tracker in accelerator.trackers:
        try:
            if tracker.name == "tensorboard":
                tracker.writer.add_image(tag, array, step, dataformats="HWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({tag: [array]}, step=step)
        except Exception as error:  # noqa: BLE001  (a tracker that cannot take images must not stop training)
            logger.warning("could not log images to %s: %s", tracker.name, error)


def save_sample_grid(grid, output_dir: str | os.PathLike, step: int) -> Path:
    folder = Path(output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.png"
    grid.save(path)
    return path


# ======================================================================================================
# Final model, model card, Hub


def command_line(script: str) -> str:
    """The command that started this run, as one would type it."""
    return "accelerate launch " + shlex.join([script, *sys.argv[1:]])


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
    stream), images, processes, and this invocation's time and images per second (from ``images_at_start``)."""
    from .models.architectures import architecture_of_config

    return {
        "architecture": architecture_of_config(accelerator.unwrap_model(model).config).name,
        "global_step": state.global_step,
        "max_train_steps": max_train_steps,
        "stopped_early": stopped_early,
        "epochs": state.epoch + state.batches_in_epoch / batches_per_epoch if batches_per_epoch else None,
        "images_seen": state.images_seen,
        "num_processes": accelerator.num_processes,
        "train_seconds_this_invocation": round(train_seconds, 1),
        "images_per_second_this_invocation": round((state.images_seen - images_at_start) / max(train_seconds, 1e-9), 3),
    }


def save_final_model(
    accelerator, model, image_processor, output_dir: str | os.PathLike, card: str, files: dict | None = None
) -> None:
    """The model folder of a run in ``output_dir`` (`hub.save_hub_folder`: weights, processor, model and pipeline
    code, ``card``, extra ``files``), written by the main process; call on every process."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_hub_folder(output_dir, accelerator.unwrap_model(model), image_processor, card, files=files)
    accelerator.wait_for_everyone()


def default_hub_model_id(args: argparse.Namespace) -> str:
    return args.hub_model_id or Path(os.path.abspath(args.output_dir)).name


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


__all__ = [
    "CHECKPOINT_PREFIX",
    "TRAINING_STATE_FILE",
    "CheckpointManager",
    "CheckpointWriteError",
    "HarmonizationTrainingPairs",
    "NonFiniteLossError",
    "StopRequest",
    "Throughput",
    "TrainingState",
    "add_checkpointing_arguments",
    "add_hub_arguments",
    "add_logging_arguments",
    "add_model_arguments",
    "add_training_arguments",
    "backward_and_step",
    "build_optimizer",
    "build_scheduler",
    "card_license",
    "check_launch",
    "check_training_arguments",
    "checkpoint_step",
    "collate_pairs",
    "composite_generator",
    "command_line",
    "dataloader_kwargs",
    "default_hub_model_id",
    "effective_learning_rate",
    "exit_on_non_finite_loss",
    "is_complete_checkpoint",
    "load_model",
    "load_training_state",
    "log_sample_grid",
    "make_accelerator",
    "make_sample_grid",
    "open_hub_repo",
    "model_path_problem",
    "output_dir_problem",
    "resolve_model_config",
    "resolve_report_to",
    "run_summary",
    "save_final_model",
    "save_sample_grid",
    "seed_for_step",
    "step_seed",
    "stop_signals",
    "upload_at_save",
    "warmup_steps",
    "warn_on_run_mismatch",
]
