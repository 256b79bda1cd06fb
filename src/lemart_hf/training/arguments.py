"""The command-line arguments both training scripts share (`add_*_arguments`), and the checks on them made before
any work (`check_training_arguments`: values no run can use, an output folder that cannot be written, a model
path that is not a saved model)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..hub import HUB_STRATEGIES
from .checkpoints import CHECKPOINT_PREFIX, TRAINING_STATE_FILE, is_complete_checkpoint
from .model import resolve_model_config


def add_model_arguments(parser: argparse.ArgumentParser, *, default_loss: str) -> None:
    from ..models.architectures import ARCHITECTURES

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
    from ..models.swinih.image_processing_swinih import MIN_WORKING_SIZE

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
