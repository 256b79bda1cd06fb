"""Foreground masks for LEMaRT pre-training (paper §3.3): random patches, a fixed grid, slanted blocks.

Every mask is a float tensor of shape (B, 1, H, W) whose values are exactly 0 or 1 (1 = foreground, the region
the composer perturbs). Masks are drawn in one batched pass from an explicit ``torch.Generator`` and live on
the generator's device (or ``device``), so training can make them on the GPU next to the images.

- ``random``: split the image into ``grid_size`` x ``grid_size`` patches and mark a random subset of
  ``round(mask_ratio * grid_size**2)`` of them, independently per image (where the grid does not divide the image,
  the patches differ in size by a pixel and the count is the one whose area comes closest to the ratio).
- ``grid``: the same number of patches, but a fixed, evenly spread (ordered-dither) pattern that is identical
  for every image; at ratio 0.5 it is a checkerboard.
- ``block``: BEiT-style blockwise masking. Repeat: draw a rectangle (area up to the still missing mask area,
  random aspect ratio), warp it by a random homography (its four corners jittered), merge it into the mask,
  until the mask ratio is reached. The warp slants the edges, so the masks do not look like patch grids.
"""

import math

import torch
import torch.nn.functional as F

MASK_STRATEGIES = ("random", "grid", "block")

# Cells per side of the coarse grid block masks are drawn on (see block_mask).
BLOCK_FIELD_CELLS = 32


def make_mask(
    strategy: str,
    batch_size: int,
    height: int,
    width: int,
    mask_ratio: float = 0.5,
    grid_size: int = 8,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw a batch of binary foreground masks with one of ``MASK_STRATEGIES``.

    Args:
        strategy: ``"random"``, ``"grid"`` or ``"block"``.
        batch_size, height, width: output shape is (batch_size, 1, height, width).
        mask_ratio: target foreground fraction in [0, 1].
        grid_size: m, the number of patches per side for ``random`` and ``grid`` (ignored by ``block``).
        generator: source of all randomness; the masks are made on its device unless ``device`` is given.
        device: device of the masks; defaults to the generator's device, else the CPU.
        dtype: floating dtype of the masks.

    Returns:
        (batch_size, 1, height, width) tensor of 0s and 1s.
    """
    if strategy == "random":
        return random_mask(
            batch_size, height, width, mask_ratio, grid_size, generator=generator, device=device, dtype=dtype
        )
    if strategy == "grid":
        device = _device(generator, device)
        return grid_mask(batch_size, height, width, mask_ratio, grid_size, device=device, dtype=dtype)
    if strategy == "block":
        return block_mask(batch_size, height, width, mask_ratio, generator=generator, device=device, dtype=dtype)
    raise ValueError(f"Unknown mask strategy {strategy!r}; expected one of {MASK_STRATEGIES}.")


def random_mask(
    batch_size: int,
    height: int,
    width: int,
    mask_ratio: float = 0.5,
    grid_size: int = 8,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per image, a random ``round(mask_ratio * grid_size**2)`` of the ``grid_size**2`` patches: (B, 1, H, W).

    Where ``grid_size`` does not divide the image, patches differ in size by a pixel; the number taken is then
    the one whose area comes closest to ``mask_ratio`` (see ``_first_patches``).
    """
    device = _device(generator, device)
    scores = torch.rand(batch_size, grid_size * grid_size, generator=generator, device=device)
    patches = _first_patches(scores.argsort(dim=1, descending=True), height, width, grid_size, mask_ratio)
    return _patches_to_pixels(patches.to(dtype).view(batch_size, 1, grid_size, grid_size), height, width)


def grid_mask(
    batch_size: int,
    height: int,
    width: int,
    mask_ratio: float = 0.5,
    grid_size: int = 8,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The same evenly spread ``round(mask_ratio * grid_size**2)`` patches for every image: (B, 1, H, W).

    Patches are taken in the order of an ordered-dither (Bayer) matrix, so any ratio gives a pattern spread over
    the whole image, and ratio 0.5 gives a checkerboard. Where ``grid_size`` does not divide the image, the number
    taken is the one whose area comes closest to ``mask_ratio`` (patches then differ in size by a pixel).
    """
    dither_order = _bayer_matrix(grid_size).flatten().argsort().to(device)
    patches = _first_patches(dither_order[None], height, width, grid_size, mask_ratio)
    pattern = _patches_to_pixels(patches.to(dtype).view(1, 1, grid_size, grid_size), height, width)
    return pattern.expand(batch_size, 1, height, width).contiguous()


def block_mask(
    batch_size: int,
    height: int,
    width: int,
    mask_ratio: float = 0.5,
    *,
    min_block_ratio: float = 0.04,
    aspect_ratio_range: tuple[float, float] = (0.3, 1 / 0.3),
    corner_jitter: float = 0.3,
    tolerance: float = 0.01,
    max_rounds: int = 64,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """BEiT-style blockwise masks with slanted edges: (B, 1, H, W).

    Each round draws one block per image: a rectangle whose area (as a fraction of the image) is uniform in
    [min(min_block_ratio, missing), missing], where ``missing = mask_ratio - covered``, with a log-uniform aspect
    ratio in ``aspect_ratio_range``; its four corners are then moved by up to ``corner_jitter`` times its shorter
    side (four point correspondences define a homography, so this is the rectangle warped by a random
    homography). A block is merged unless that would overshoot the ratio by more than ``tolerance``. An image
    is done once its covered fraction is within ``tolerance`` of ``mask_ratio``; rounds stop when all are done
    (or after ``max_rounds``; ratios above about 0.85 may then fall short, as in BEiT).

    The union of blocks is rasterised as a signed-distance field (max over blocks of the min over edges of the
    distance to the edge, positive inside) on a coarse grid of at most ``BLOCK_FIELD_CELLS`` cells per side,
    then bilinearly upsampled and thresholded at 0: distances are linear along an edge, so edges stay straight
    and sharp at full resolution (corners round off by about a cell) while the per-round work stays small.
    Coverage is measured on the coarse grid, so the realised ratio is within about +-0.03 of ``mask_ratio``.
    """
    _num_masked_patches(mask_ratio, 1)
    device = _device(generator, device)
    field_height, field_width = min(height, BLOCK_FIELD_CELLS), min(width, BLOCK_FIELD_CELLS)
    # Cell centres in full-resolution pixel units, the frame the blocks are drawn in.
    ys = (torch.arange(field_height, device=device) + 0.5) * (height / field_height)
    xs = (torch.arange(field_width, device=device) + 0.5) * (width / field_width)
    ys, xs = ys.view(1, 1, -1, 1), xs.view(1, 1, 1, -1)

    # Start far outside everything, so that after the first block the field is a true distance everywhere.
    field = torch.full((batch_size, field_height, field_width), -4.0 * (height + width), device=device)
    covered = torch.zeros(batch_size, device=device)
    log_aspect_low, log_aspect_high = math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])
    for _ in range(max_rounds):
        # Only images still short of the ratio take part, so the late rounds (few stragglers) are cheap.
        active = (mask_ratio - covered > tolerance).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        uniforms = torch.rand(active.numel(), 12, generator=generator, device=device)
        missing = mask_ratio - covered[active]
        smallest = missing.clamp(max=min_block_ratio)
        area = (smallest + (missing - smallest) * uniforms[:, 0]) * (height * width)
        aspect = torch.exp(log_aspect_low + (log_aspect_high - log_aspect_low) * uniforms[:, 1])
        block_height = (area * aspect).sqrt().clamp(1.0, height)
        block_width = (area / aspect).sqrt().clamp(1.0, width)
        top = (height - block_height) * uniforms[:, 2]
        left = (width - block_width) * uniforms[:, 3]
        # Corners clockwise on screen (y down): top-left, top-right, bottom-right, bottom-left.
        corner_x = torch.stack([left, left + block_width, left + block_width, left], dim=1)
        corner_y = torch.stack([top, top, top + block_height, top + block_height], dim=1)
        jitter = corner_jitter * torch.minimum(block_height, block_width).unsqueeze(1)
        corner_x = corner_x + jitter * (2 * uniforms[:, 4:8] - 1)
        corner_y = corner_y + jitter * (2 * uniforms[:, 8:12] - 1)

        active_field = field[active]
        candidate = torch.maximum(active_field, _convex_quad_distance(corner_x, corner_y, xs, ys))
        candidate_covered = torch.count_nonzero(candidate > 0, dim=(1, 2)) / (field_height * field_width)
        accept = candidate_covered <= mask_ratio + tolerance
        field[active] = torch.where(accept.view(-1, 1, 1), candidate, active_field)
        covered[active] = torch.where(accept, candidate_covered, covered[active])

    upsampled = F.interpolate(field.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)
    return upsampled.gt_(0).to(dtype)


def _convex_quad_distance(
    corner_x: torch.Tensor, corner_y: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor
) -> torch.Tensor:
    """Signed distance-like field of B quadrilaterals (B, 4 corners, clockwise on screen) at points (xs, ys).

    ``xs`` is (1, 1, 1, w) and ``ys`` (1, 1, h, 1). Returns (B, h, w): the minimum over the four edges of the
    signed distance to the edge's line, positive inside; for a convex quadrilateral it is positive exactly
    inside it.
    """
    end_x, end_y = corner_x.roll(-1, dims=1), corner_y.roll(-1, dims=1)
    edge_x, edge_y = end_x - corner_x, end_y - corner_y
    length = torch.hypot(edge_x, edge_y).clamp_min(1e-6)
    # Edge line as normal . (x, y) + offset, with a unit normal pointing inside.
    normal_x, normal_y = -edge_y / length, edge_x / length
    offset = -(normal_x * corner_x + normal_y * corner_y)
    along_x = normal_x.unsqueeze(-1).unsqueeze(-1) * xs
    along_y = (normal_y.unsqueeze(-1).unsqueeze(-1) * ys).add_(offset.unsqueeze(-1).unsqueeze(-1))
    return (along_x + along_y).amin(dim=1)


def _first_patches(order: torch.Tensor, height: int, width: int, grid_size: int, mask_ratio: float) -> torch.Tensor:
    """(B, m*m) float 0/1: per row of ``order`` (patch indices, most wanted first), its first k patches.

    k is ``round(mask_ratio * m*m)`` where ``grid_size`` divides the image (all patches equal). Elsewhere patches
    differ in size by a pixel, as ``_patches_to_pixels`` draws them at (height, width), and k per row is the count
    whose pixel area comes closest to ``mask_ratio * height * width``. Nothing is read back from the device.
    """
    num_patches = grid_size * grid_size
    device = order.device
    if height % grid_size == 0 and width % grid_size == 0:
        count = torch.full((order.shape[0], 1), _num_masked_patches(mask_ratio, num_patches), device=device)
    else:
        index_map = torch.arange(num_patches, device=device, dtype=torch.float32).view(1, 1, grid_size, grid_size)
        pixel_patches = _patches_to_pixels(index_map, height, width).flatten().long()
        areas = torch.zeros(num_patches, device=device).scatter_add_(
            0, pixel_patches, torch.ones(height * width, device=device)
        )
        covered = F.pad(areas[order].cumsum(dim=1), (1, 0))  # (B, m*m + 1): area of the first k, k = 0 .. m*m
        count = (covered - mask_ratio * height * width).abs().argmin(dim=1, keepdim=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(num_patches, device=device).expand_as(order))
    return (ranks < count).float()


def _patches_to_pixels(patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, m, m) patch mask -> (B, 1, height, width) by nearest-neighbour upsampling."""
    if height % patches.shape[-2] == 0 and width % patches.shape[-1] == 0:
        batch, _, rows, cols = patches.shape
        scale_y, scale_x = height // rows, width // cols
        pixels = patches.view(batch, 1, rows, 1, cols, 1).expand(batch, 1, rows, scale_y, cols, scale_x)
        return pixels.reshape(batch, 1, height, width)
    return F.interpolate(patches, size=(height, width), mode="nearest")


def _bayer_matrix(size: int) -> torch.Tensor:
    """(size, size) ordered-dither ranks: the top-left crop of the next power-of-two Bayer matrix."""
    matrix = torch.zeros(1, 1, dtype=torch.long)
    while matrix.shape[0] < size:
        matrix = torch.cat(
            [torch.cat([4 * matrix, 4 * matrix + 2], dim=1), torch.cat([4 * matrix + 3, 4 * matrix + 1], dim=1)], dim=0
        )
    return matrix[:size, :size]


def _num_masked_patches(mask_ratio: float, num_patches: int) -> int:
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}.")
    return round(mask_ratio * num_patches)


def _device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")
