"""One training micro-step after the forward pass (`backward_and_step`: a single gather of every process's loss
and stop request, a non-finite loss stopped before it reaches the weights, backward, clipping, optimizer and
scheduler step), the exit on a non-finite loss (`exit_on_non_finite_loss`), the `Throughput` meter and the
`TrainingClock`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import NoReturn

import torch

from ..stopping import StopRequest
from .accelerator import _prog
from .checkpoints import CHECKPOINT_PREFIX, CheckpointManager, TrainingState, _generation, is_complete_checkpoint


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


class TrainingClock:
    """Adds the wall-clock time from one optimizer step to the next to ``state.train_seconds`` (`step`), leaving out
    what runs inside `paused` (validation), so that a run's compute adds up over its invocations."""

    def __init__(self, state: TrainingState):
        self.state = state
        self.last_time = time.perf_counter()

    def step(self) -> None:
        now = time.perf_counter()
        self.state.train_seconds += now - self.last_time
        self.last_time = now

    @contextmanager
    def paused(self):
        try:
            yield
        finally:
            self.last_time = time.perf_counter()


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
