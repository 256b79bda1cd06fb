"""Self-supervised samples mixed into fine-tuning batches.

Labelled harmonization sets (iHarmony4, HOutdoor, HDiverse) are made by colour transfer from another photo's object.
Fine-tuned on them alone, a model learns "make the foreground look like its background", which real composites
punish (a white shirt on a purple court turned purple). Two kinds of sample, made from the pairs' own real images,
keep it honest:

- LEMaRT composites: the real image perturbed by LEMaRT's attributes (brightness, contrast, saturation, hue, gamma,
  white balance, blur, sharpness) inside the pair's real object mask; the target is the real image. The foreground
  change is independent of the background, so copying the background's statistics does not undo it.
- identity samples: the real image itself as the input; the target is the input. A region that already fits its
  scene is left alone.
"""

from __future__ import annotations

import torch

from .composer import LEMaRTComposer

#: `mix_self_supervised`'s ``source`` codes.
LABELLED, LEMART, IDENTITY = 0, 1, 2


def mixed_counts(batch_size: int, lemart_fraction: float, identity_fraction: float) -> tuple[int, int]:
    """(LEMaRT, identity) samples per batch: the fractions of ``batch_size``, rounded, that together fit in it."""
    fractions_fit = 0.0 <= lemart_fraction and 0.0 <= identity_fraction and lemart_fraction + identity_fraction <= 1.0
    if not fractions_fit:
        raise ValueError(
            f"the LEMaRT and identity fractions must be >= 0 with a sum <= 1, got {lemart_fraction} and "
            f"{identity_fraction}"
        )
    num_lemart = round(lemart_fraction * batch_size)
    return num_lemart, min(round(identity_fraction * batch_size), batch_size - num_lemart)


def mix_self_supervised(
    batch: dict[str, torch.Tensor],
    composer: LEMaRTComposer,
    *,
    lemart_fraction: float,
    identity_fraction: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Replace some labelled composites of a fine-tuning batch by self-supervised ones made from their real images.

    Args:
        batch: ``{"pixel_values" (B, 4, R, R), "labels" (B, 3, R, R), "mask" (B, 1, R, R), ...}`` as
            `lemart_hf.training.collate_pairs` makes it: composite RGB + mask, the real images, in [0, 1].
        composer: makes the LEMaRT composites (its mask strategy is not used: the pairs' masks are).
        lemart_fraction, identity_fraction: shares of the batch (rounded, `mixed_counts`) that become LEMaRT
            composites and identity samples; the positions are a permutation drawn from ``generator``.
        generator: CPU generator, the only source of randomness (seed it per step for exact resumption).

    Returns:
        A new dict with the same keys (the input is not modified; labels and mask are unchanged) and
        ``"source"`` (B,) long: `LABELLED`, `LEMART` or `IDENTITY` per sample.
    """
    pixel_values = batch["pixel_values"]
    size = pixel_values.shape[0]
    num_lemart, num_identity = mixed_counts(size, lemart_fraction, identity_fraction)
    order = torch.randperm(size, generator=generator).to(pixel_values.device)
    lemart, identity = order[:num_lemart], order[num_lemart : num_lemart + num_identity]
    source = torch.full((size,), LABELLED, dtype=torch.long, device=pixel_values.device)
    source[lemart], source[identity] = LEMART, IDENTITY
    pixel_values = pixel_values.clone()
    real, mask = batch["labels"], batch["mask"]
    if num_lemart:
        composed = composer(real[lemart], generator=generator, mask=mask[lemart])
        pixel_values[lemart, :3] = composed["pixel_values"][:, :3]
    if num_identity:
        pixel_values[identity, :3] = real[identity]
    return {**batch, "pixel_values": pixel_values, "source": source}
