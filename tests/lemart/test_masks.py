import pytest
import torch

from lemart_hf.lemart import MASK_STRATEGIES, block_mask, grid_mask, make_mask, random_mask

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _seeded(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _changed_rows(mask: torch.Tensor) -> torch.Tensor:
    """(B,) number of rows that differ from the row above: a union of axis-aligned rectangles changes only at
    rectangle tops and bottoms, a slanted edge changes every row it crosses."""
    return (mask[:, 0, 1:] != mask[:, 0, :-1]).any(dim=-1).sum(dim=-1)


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
def test_masks_are_binary_with_the_contract_shape(strategy):
    mask = make_mask(strategy, 6, 96, 80, generator=_seeded(0))
    assert mask.shape == (6, 1, 96, 80) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("strategy", ["random", "grid"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_patch_masks_hit_the_ratio_exactly(strategy, ratio):
    mask = make_mask(strategy, 8, 128, 128, mask_ratio=ratio, grid_size=8, generator=_seeded(1))
    torch.testing.assert_close(mask.mean(dim=(1, 2, 3)), torch.full((8,), ratio))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_block_masks_are_within_tolerance_of_the_ratio(ratio):
    mask = block_mask(32, 128, 128, mask_ratio=ratio, generator=_seeded(2))
    realised = mask.mean(dim=(1, 2, 3))
    assert (realised - ratio).abs().max() < 0.03, realised


def test_patch_masks_work_when_the_size_is_not_a_multiple_of_the_grid():
    mask = random_mask(4, 100, 70, mask_ratio=0.5, grid_size=8, generator=_seeded(0))
    assert mask.shape == (4, 1, 100, 70)
    assert (mask.mean(dim=(1, 2, 3)) - 0.5).abs().max() < 0.06


@pytest.mark.parametrize("strategy", ["random", "grid"])
@pytest.mark.parametrize("size, grid_size, ratio", [(52, 8, 0.25), (48, 32, 0.25), (56, 16, 0.25), (4, 8, 0.5)])
def test_patch_masks_hit_the_ratio_when_patches_differ_in_size(strategy, size, grid_size, ratio):
    """Sizes that grid_size does not divide give patches a pixel apart in size; the count follows the area."""
    mask = make_mask(strategy, 16, size, size, ratio, grid_size, generator=_seeded(0))
    assert (mask.mean(dim=(1, 2, 3)) - ratio).abs().max() < 0.02


def test_grid_mask_is_identical_across_images_and_a_checkerboard_at_half():
    mask = grid_mask(5, 64, 64, mask_ratio=0.5, grid_size=8)
    assert torch.equal(mask, mask[:1].expand_as(mask))
    patches = mask[0, 0, ::8, ::8]
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = ((rows + cols) % 2 == 0).float()
    assert torch.equal(patches, checker) or torch.equal(patches, 1 - checker)


def test_random_masks_differ_across_images():
    mask = random_mask(8, 64, 64, generator=_seeded(0))
    assert len({tuple(m.flatten().tolist()) for m in mask}) == 8


def test_block_edges_are_not_all_axis_aligned():
    blocks = block_mask(16, 128, 128, generator=_seeded(3))
    grid = grid_mask(16, 128, 128)
    # Axis-aligned patch masks change at a handful of rows; slanted blocks at most rows they cover.
    assert _changed_rows(grid).max() <= 7
    assert (_changed_rows(blocks) > 30).float().mean() > 0.9


@pytest.mark.parametrize("strategy", ["random", "block"])
def test_same_seed_same_mask_other_seed_other_mask(strategy):
    first = make_mask(strategy, 4, 64, 64, generator=_seeded(7))
    again = make_mask(strategy, 4, 64, 64, generator=_seeded(7))
    other = make_mask(strategy, 4, 64, 64, generator=_seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
def test_masks_are_made_on_the_generator_device(strategy, device):
    mask = make_mask(strategy, 3, 64, 64, generator=_seeded(0, device), dtype=torch.float16)
    assert mask.device.type == device and mask.dtype == torch.float16 and mask.shape == (3, 1, 64, 64)


def test_extreme_ratios():
    assert make_mask("random", 2, 32, 32, mask_ratio=0.0, generator=_seeded(0)).sum() == 0
    assert make_mask("grid", 2, 32, 32, mask_ratio=1.0).min() == 1
    assert make_mask("block", 2, 32, 32, mask_ratio=0.0, generator=_seeded(0)).sum() == 0


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="strategy"):
        make_mask("circles", 1, 32, 32)
    with pytest.raises(ValueError, match="mask_ratio"):
        make_mask("block", 1, 32, 32, mask_ratio=1.5)
