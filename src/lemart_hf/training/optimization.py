"""AdamW with the paper's settings and its learning-rate schedule: `build_optimizer`, `effective_learning_rate`
(``--scale_lr``), `warmup_steps`, `build_scheduler`."""

from __future__ import annotations

import argparse

import torch


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
