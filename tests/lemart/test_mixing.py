import pytest
import torch

from lemart_hf.lemart import LEMaRTComposer
from lemart_hf.lemart.mixing import IDENTITY, LABELLED, LEMART, mix_self_supervised, mixed_counts


def _batch(make_images, size=8):
    real = make_images(size, 32, 32, seed=1)
    mask = torch.zeros(size, 1, 32, 32)
    mask[:, :, 8:24, 4:20] = 1
    composite = torch.where(mask.bool(), (real * 0.6).clamp(0, 1), real)
    return {"pixel_values": torch.cat([composite, mask], 1), "labels": real, "mask": mask}


def test_counts_round_and_fit_in_the_batch():
    assert mixed_counts(16, 0.25, 0.25) == (4, 4)
    assert mixed_counts(3, 0.5, 0.5) == (2, 1)
    assert mixed_counts(16, 0.0, 0.0) == (0, 0)
    with pytest.raises(ValueError, match="must be >= 0 with a sum <= 1"):
        mixed_counts(16, 0.7, 0.5)


def test_each_kind_of_sample_is_what_it_says(make_images):
    batch = _batch(make_images)
    mixed = mix_self_supervised(
        batch, LEMaRTComposer(), lemart_fraction=0.25, identity_fraction=0.25, generator=torch.Generator().manual_seed(0)
    )
    source = mixed["source"]
    assert [(source == kind).sum().item() for kind in (LABELLED, LEMART, IDENTITY)] == [4, 2, 2]
    rgb, real, inside = mixed["pixel_values"][:, :3], batch["labels"], batch["mask"].bool().expand(-1, 3, -1, -1)
    assert torch.equal(mixed["labels"], real) and torch.equal(mixed["pixel_values"][:, 3:], batch["mask"])
    assert torch.equal(rgb[source == LABELLED], batch["pixel_values"][source == LABELLED, :3])
    assert torch.equal(rgb[source == IDENTITY], real[source == IDENTITY])
    lemart = source == LEMART
    # LEMaRT composites: the real image outside the object mask, perturbed inside it.
    assert torch.equal(rgb[lemart][~inside[lemart]], real[lemart][~inside[lemart]])
    assert (rgb[lemart][inside[lemart]] - real[lemart][inside[lemart]]).abs().mean() > 0.01
    assert not torch.equal(batch["pixel_values"][:, :3], batch["labels"])  # the input batch is untouched


def test_the_same_generator_seed_mixes_the_same(make_images):
    batch, composer = _batch(make_images), LEMaRTComposer()
    runs = [
        mix_self_supervised(batch, composer, lemart_fraction=0.5, identity_fraction=0.0, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.equal(runs[0]["pixel_values"], runs[1]["pixel_values"])
    assert torch.equal(runs[0]["source"], runs[1]["source"])


def test_composer_perturbs_inside_a_given_mask_only(make_images):
    images = make_images(4, 32, 48)
    mask = torch.zeros(4, 1, 32, 48)
    mask[:, :, 4:20, 10:30] = 0.9  # soft values are thresholded at 0.5
    out = LEMaRTComposer()(images, torch.Generator().manual_seed(0), mask=mask)
    assert torch.equal(out["mask"], (mask > 0.5).float())
    outside = ~(mask > 0.5).expand(-1, 3, -1, -1)
    assert torch.equal(out["pixel_values"][:, :3][outside], images[outside])
    with pytest.raises(ValueError, match=r"mask must be a tensor of shape \(4, 1, 32, 48\)"):
        LEMaRTComposer()(images, mask=mask[:, :, :16])
