"""Generators for reproducible, resumable LEMaRT compositing on any device."""

import numpy as np
import torch


def generator_for_step(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for training step ``step`` of a run seeded ``seed``.

    The same (seed, step) always gives the same composites, whatever happened before, so a run resumed from a
    checkpoint at step k composites exactly as the uninterrupted run did. Seed and step are mixed by NumPy's
    ``SeedSequence`` (so nearby pairs such as (0, 1) and (1, 0) give unrelated streams).
    """
    mixed = int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(mixed)


def generator_on_device(generator: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator that can draw on ``device``.

    ``generator`` itself when it already lives there; otherwise a new generator on ``device`` seeded with a
    draw from ``generator`` (deterministic, and it advances ``generator``). ``None`` stays ``None`` (torch's
    global RNG of that device).
    """
    if generator is None or _same_device(generator.device, torch.device(device)):
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item())
    return torch.Generator(device=device).manual_seed(seed)


def _same_device(first: torch.device, second: torch.device) -> bool:
    return first.type == second.type and _device_index(first) == _device_index(second)


def _device_index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if device.type == "cuda" else 0
