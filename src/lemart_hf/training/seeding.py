"""The randomness of each training step as a function of (seed, micro-batch, process) alone, so that a resumed
run draws what the uninterrupted run drew: `step_seed`, `seed_for_step` (torch's global RNG, e.g. stochastic
depth), `composite_generator` (the LEMaRT composer's generator)."""

from __future__ import annotations

import numpy as np
import torch


def step_seed(seed: int, step: int, process_index: int = 0) -> int:
    """A 63-bit seed for micro-batch ``step`` of process ``process_index`` in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, step, process_index, 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> 1)


def composite_generator(seed: int, state, accelerator, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of the composites of this micro-batch of this process (LEMaRT pre-training, the self-supervised
    samples of fine-tuning): it depends on (seed, micro-batch, process) alone, so a resumed run draws exactly the
    composites the uninterrupted run drew."""
    from ..lemart import generator_for_step

    stream = state.micro_step * accelerator.num_processes + accelerator.process_index
    return generator_for_step(seed, stream, device=device)


def seed_for_step(seed: int, step: int, process_index: int = 0) -> None:
    """Reseed torch's global RNG (all devices) for one micro-batch, so its randomness does not depend on history."""
    torch.manual_seed(step_seed(seed, step, process_index))
