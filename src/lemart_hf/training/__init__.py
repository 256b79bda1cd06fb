"""What the example training scripts share: arguments, model and optimiser set-up, exact resumption, atomic
checkpoints, sample grids, the model folder and the Hub upload (the folder, card and upload themselves: `hub`).

`examples/run_pretrain.py` (LEMaRT pre-training) and `examples/run_finetune.py` (fine-tuning on iHarmony4-layout
data) write their training loops out in full; this package holds the parts that would otherwise be copied
between them. Nothing here is specific to one script. Everything is imported from here
(``from lemart_hf.training import ...``); the modules:

- `arguments`: the shared command-line arguments and the checks on them before any work;
- `accelerator`: the `Accelerator` of a run, its trackers, and the checks on how the script was launched and on
  the engine settings of the launcher (DeepSpeed's batch, accumulation and clipping);
- `model`: the model config from a preset or a file, and the model and image processor to train;
- `optimization`: AdamW and the learning-rate schedule;
- `seeding`: the per-micro-batch seeds and the composer's generator;
- `checkpoints`: `TrainingState` and the atomic, rotated checkpoints of `CheckpointManager`, on one folder
  shared by all nodes or on each node's own disk, and the checks before resuming;
- `step`: backward and optimizer step after the forward pass, the non-finite-loss exit, throughput;
- `data`: DataLoader worker settings and the labeled training pairs of fine-tuning;
- `sample_grids`: sample grids, made, logged to the trackers and saved;
- `reporting`: the command line, the run summary, the card's licence and the final model folder;
- `hub_upload`: ``--push_to_hub``: the repository, checked before training, and the uploads at saves.

Exact resumption rests on three things:

- the data position: each `checkpoint-{step}` records the epoch and how many batches of it were consumed; the
  shuffling and the per-sample crops are functions of (seed, epoch, key) only (`lemart_hf.data.photos`), so the
  resumed run skips those batches and sees exactly what the uninterrupted run saw;
- the randomness of each training step: the LEMaRT composer draws from `generator_for_step(seed, n)` and the
  model's own randomness (stochastic depth) from the global RNG reseeded with `step_seed(seed, n, process)` before
  every micro-batch ``n``, so no random state carries over from step to step;
- model, optimizer, scheduler and gradient scaler through `Accelerator.save_state` / `load_state`.
"""

from ..stopping import StopRequest
from .accelerator import align_engine_settings, check_launch, make_accelerator, resolve_report_to
from .arguments import (
    add_checkpointing_arguments,
    add_hub_arguments,
    add_logging_arguments,
    add_model_arguments,
    add_training_arguments,
    check_training_arguments,
    model_path_problem,
    output_dir_problem,
)
from .checkpoints import (
    CHECKPOINT_PREFIX,
    TRAINING_STATE_FILE,
    CheckpointManager,
    CheckpointWriteError,
    TrainingState,
    checkpoint_step,
    engine_name,
    is_complete_checkpoint,
    load_training_state,
    open_checkpoints,
    output_dir_is_shared,
    resume_point,
    warn_on_run_mismatch,
)
from .data import HarmonizationTrainingPairs, collate_pairs, dataloader_kwargs
from .hub_upload import default_hub_model_id, open_hub_repo, upload_at_save
from .model import load_model, resolve_model_config
from .optimization import build_optimizer, build_scheduler, effective_learning_rate, warmup_steps
from .reporting import card_license, command_line, run_summary, save_final_model
from .sample_grids import log_sample_grid, make_sample_grid, save_sample_grid
from .seeding import composite_generator, seed_for_step, step_seed
from .step import NonFiniteLossError, Throughput, TrainingClock, backward_and_step, exit_on_non_finite_loss, stop_signals

__all__ = [
    "CHECKPOINT_PREFIX",
    "TRAINING_STATE_FILE",
    "CheckpointManager",
    "CheckpointWriteError",
    "HarmonizationTrainingPairs",
    "NonFiniteLossError",
    "StopRequest",
    "Throughput",
    "TrainingClock",
    "TrainingState",
    "add_checkpointing_arguments",
    "add_hub_arguments",
    "add_logging_arguments",
    "add_model_arguments",
    "add_training_arguments",
    "align_engine_settings",
    "backward_and_step",
    "build_optimizer",
    "build_scheduler",
    "card_license",
    "check_launch",
    "check_training_arguments",
    "checkpoint_step",
    "collate_pairs",
    "command_line",
    "composite_generator",
    "dataloader_kwargs",
    "default_hub_model_id",
    "effective_learning_rate",
    "engine_name",
    "exit_on_non_finite_loss",
    "is_complete_checkpoint",
    "load_model",
    "load_training_state",
    "log_sample_grid",
    "make_accelerator",
    "make_sample_grid",
    "model_path_problem",
    "open_checkpoints",
    "open_hub_repo",
    "output_dir_is_shared",
    "output_dir_problem",
    "resolve_model_config",
    "resolve_report_to",
    "resume_point",
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
