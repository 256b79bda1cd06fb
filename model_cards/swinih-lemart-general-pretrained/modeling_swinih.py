"""SwinIH: a Swin transformer for image harmonization at full token resolution (LEMaRT, CVPR 2023, §3.4).

Tokens are kept channels-last and contiguous, `(B, h, w, C)`, through the whole network. How attention is made fast
(DESIGN.md §5):

- Window attention reorders the tokens once with a cached permutation ("window order": cyclic shift, window
  partition and grouping folded into ONE row gather, undone by one gather after the output projection), so the fused
  QKV projection writes windows directly and query / key / value are strided views of its output: no roll, no
  partition / merge copies, no per-head copies, no Python loop over windows.
- Regular windows: one `scaled_dot_product_attention` call over `(B * windows, heads, N, head_dim)`; the relative
  position bias is gathered once per forward as `(1, heads, N, N)` and broadcasts over batch and windows.
- Shifted windows: Swin's -inf shift mask only ever cuts the windows that wrap around the grid into independent
  rectangles. The window order lists those rectangles directly (grouped by shape: 4 shapes for shift = window / 2),
  so each group is one SDPA call with its own broadcast bias and NO shift mask: no `(windows * heads, N, N)` mask is
  built, and the masked-out scores are never computed.
- Global layer: SDPA over all tokens without a mask, so fused (flash / memory-efficient) kernels apply and the
  `(T, T)` attention matrix is never materialised; at 1024x1024 that is what makes the layer run at all.
- The permutations and relative position indices are cached per (size, device) in eager mode and traced as ordinary
  ops under `torch.compile` (no graph breaks).

`config._attn_implementation == "eager"` (or `output_attentions=True`) runs the reference formulation instead:
roll, partition every window, the full `(windows * heads, N, N)` bias + shift mask and an explicit softmax. Both give
the same numbers (tests/models/swinih).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput

from .configuration_swinih import SwinIHConfig
from .modeling_harmonization import HarmonizationModelMixin


def drop_path(hidden: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability `drop_prob`."""
    if drop_prob == 0.0 or not training:
        return hidden
    keep = 1.0 - drop_prob
    shape = (hidden.shape[0],) + (1,) * (hidden.ndim - 1)
    return hidden * hidden.new_empty(shape).bernoulli_(keep).div_(keep)


def add_drop_path(residual: torch.Tensor, branch: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """`residual + drop_path(branch)` in one pass (`addcmul`) when stochastic depth is active."""
    if drop_prob == 0.0 or not training:
        return residual + branch
    keep = 1.0 - drop_prob
    shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    return torch.addcmul(residual, branch, branch.new_empty(shape).bernoulli_(keep).div_(keep))


_CONSTANTS: dict[tuple, tuple[torch.Tensor, ...]] = {}


def _cached_constant(key: tuple, build: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Constant index tensors built once per key (sizes, device) in eager mode.

    Under `torch.compile` the builder is traced instead (a handful of arange / compare ops that the compiler folds),
    so the Python dict never reaches dynamo: no graph break, no recompilation.
    """
    if torch.compiler.is_compiling():
        return build()
    value = _CONSTANTS.get(key)
    if value is None:
        if len(_CONSTANTS) >= 512:  # many distinct input sizes: start over rather than grow without bound
            _CONSTANTS.clear()
        with torch.inference_mode(False):  # usable with autograd later even if first built in inference mode
            value = _CONSTANTS[key] = build()
    return value


def relative_position_index(window: tuple[int, int], table_window: int, device: torch.device) -> torch.Tensor:
    """Index (N, N), N = window_h * window_w, into a relative-bias table made for square `table_window` windows."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window[0], device=device), torch.arange(window[1], device=device), indexing="ij")
    ).flatten(1)
    relative = coords[:, :, None] - coords[:, None, :] + (table_window - 1)
    return relative[0] * (2 * table_window - 1) + relative[1]


def _shift_regions(side: int, window: int, shift: int) -> tuple[slice, ...]:
    if shift == 0:
        return (slice(0, side),)
    return (slice(0, -window), slice(-window, -shift), slice(-shift, None))


def shifted_window_mask(
    height: int, width: int, window: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Additive mask (num_windows, N, N): -inf between tokens that come from different regions after the roll."""
    region = torch.zeros(height, width, device=device)
    label = 0
    for rows in _shift_regions(height, window[0], shift[0]):
        for cols in _shift_regions(width, window[1], shift[1]):
            region[rows, cols] = label
            label += 1
    windows = window_partition(region[None, :, :, None], window)[0, :, :, 0]  # (num_windows, N)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, float("-inf"))


def window_partition(tokens: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(B, h, w, C) -> (B, num_windows, window_h * window_w, C), windows in row-major order."""
    batch, height, width, channels = tokens.shape
    win_h, win_w = window
    tokens = tokens.view(batch, height // win_h, win_h, width // win_w, win_w, channels)
    return tokens.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, win_h * win_w, channels)


def window_merge(windows: torch.Tensor, window: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B, num_windows, N, C) -> (B, h, w, C)."""
    batch, _, _, channels = windows.shape
    win_h, win_w = window
    windows = windows.view(batch, height // win_h, width // win_w, win_h, win_w, channels)
    return windows.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


# ----- window order: shift + partition + grouping as one token permutation -----------------------------------------
def _axis_segments(side: int, window: int, shift: int) -> list[tuple[int, int]]:
    """(start, length) of the attention regions along one axis, in the unshifted grid's coordinates.

    Without a shift: the windows. With one, the windows of the cyclically shifted grid are
    `[s, s + w), [s + w, s + 2w), ...` and one last window that wraps around: `[side - w + s, side)` + `[0, s)`. The
    shift mask of Swin forbids attention across the wrap, so each half of that window is a region of its own.
    """
    if shift == 0:
        return [(start, window) for start in range(0, side, window)]
    full = [(start, window) for start in range(shift, side - window, window)]
    return [(0, shift), *full, (side - window + shift, window - shift)]


def window_groups(
    height: int, width: int, window: tuple[int, int], shift: tuple[int, int]
) -> list[tuple[tuple[int, int], int]]:
    """Attention regions grouped by shape: ((region height, region width), regions per image), in window order.

    Regular windows are one group. Shifted windows split into full windows and the parts of the wrapping ones
    (with shift = window / 2: 4 shapes), so every region attends densely and no -inf shift mask is needed.
    """
    counts: dict[tuple[int, int], int] = {}
    for _, rows in _axis_segments(height, window[0], shift[0]):
        for _, cols in _axis_segments(width, window[1], shift[1]):
            counts[(rows, cols)] = counts.get((rows, cols), 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[0][0] * item[0][1], item[0]))


def window_order(
    batch: int, height: int, width: int, window: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation of the `batch * height * width` tokens (row-major `(B, h, w)`) into window order, and its inverse.

    Window order: the groups of `window_groups` one after the other; inside a group (image, region); inside a region
    its tokens row-major. So `flat[order]` cut at the group sizes and viewed `(B * regions, region tokens, C)` is
    every group ready for batched attention, and `flat_windowed[inverse]` undoes it all.
    """
    row_segments = _axis_segments(height, window[0], shift[0])
    col_segments = _axis_segments(width, window[1], shift[1])
    image_offsets = torch.arange(batch, device=device)[:, None] * (height * width)
    pieces = []
    for (rows, cols), _ in window_groups(height, width, window, shift):
        row_starts = torch.tensor([start for start, length in row_segments if length == rows], device=device)
        col_starts = torch.tensor([start for start, length in col_segments if length == cols], device=device)
        row_index = row_starts[:, None] + torch.arange(rows, device=device)  # (regions down, rows)
        col_index = col_starts[:, None] + torch.arange(cols, device=device)  # (regions across, cols)
        regions = row_index[:, None, :, None] * width + col_index[None, :, None, :]  # (down, across, rows, cols)
        pieces.append((image_offsets + regions.reshape(1, -1)).flatten())
    order = torch.cat(pieces)
    return order, torch.argsort(order)


class _PermuteRows(torch.autograd.Function):
    """`source.index_select(0, order)` for a permutation `order`; the gradient is one gather by `inverse` too
    (rather than index_select's scatter-add)."""

    @staticmethod
    def forward(ctx, source: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return source.index_select(0, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def permute_rows(source: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Rows of a 2-D tensor in the order `order` (a permutation whose inverse is `inverse`)."""
    return _PermuteRows.apply(source, order, inverse)


def _heads_first(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B', L, 3, heads, head_dim) -> query, key, value (B', heads, L, head_dim): strided views, no copies.

    Unbinding the "3" axis first makes the backward ONE stack straight into the (B', L, 3 * C) layout of the fused
    projection (unbinding after the head transpose would stack, then copy to undo the transpose).
    """
    query, key, value = qkv.unbind(2)
    return query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)


class SwinIHAttention(nn.Module):
    """Multi-head self-attention over windows (with relative position bias) or over all tokens (global).

    Input and output: tokens (B, h, w, C). `window` is the effective (height, width) of the windows for this input
    (per axis the configured window, or the grid side where the grid is smaller); `shift` the cyclic shift per
    axis ((0, 0) for regular windows).
    """

    def __init__(self, config: SwinIHConfig, dim: int, num_heads: int, is_global: bool):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.is_global = is_global
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)
        if not is_global:
            table_side = 2 * config.window_size - 1
            self.relative_position_bias_table = nn.Parameter(torch.zeros(table_side * table_side, num_heads))
            self._bias_cache: dict[tuple, tuple[torch.Tensor, int, torch.Tensor]] = {}  # see _relative_bias

    def _relative_bias(self, window: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """Relative position bias (heads, N, N), contiguous, gathered once per forward (not per window).

        Without autograd (inference) the gathered bias is kept per (window, dtype) until the table changes: with the
        paper's 32x32 windows it is 1-16 M entries per layer, and gathering it (mostly faulting in fresh pages) took
        a fifth of a bf16 forward on CPU. With autograd it is gathered anew, so the gradient reaches the table.
        """
        if torch.compiler.is_compiling():
            return self._gather_relative_bias(window, dtype)
        if torch.is_grad_enabled():
            self._bias_cache.clear()
            return self._gather_relative_bias(window, dtype)
        table = self.relative_position_bias_table
        key = (window, dtype, table.device)
        cached = self._bias_cache.get(key)
        # Kept beside the bias: the table's storage (alive, so a moved or re-cast table never reuses its address) and
        # version (bumped by in-place updates: load_state_dict, an optimizer step). Either change gathers anew.
        if cached is None or cached[0].data_ptr() != table.data_ptr() or cached[1] != table._version:
            cached = self._bias_cache[key] = (table.detach(), table._version, self._gather_relative_bias(window, dtype))
        return cached[2]

    def _gather_relative_bias(self, window: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        table = self.relative_position_bias_table
        table_window = self.config.window_size
        (index,) = _cached_constant(
            ("relative_position_index", window, table_window, table.device),
            lambda: (relative_position_index(window, table_window, table.device).flatten(),),
        )
        # Gathering from the (heads, entries) view writes each head's (N, N) map contiguously (what SDPA reads).
        length = window[0] * window[1]
        return table.t().index_select(1, index).view(self.num_heads, length, length).to(dtype)

    def _attend(self, query, key, value, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention (B', heads, L, head_dim) with an optional additive mask broadcasting to (B', heads, L, L)."""
        dropout = self.config.attention_probs_dropout_prob if self.training else 0.0
        if mask is not None and mask.requires_grad and query.device.type == "cpu" and torch.is_grad_enabled():
            # SDPA's CPU kernel has no gradient for a mask, so SDPA would run its math fallback here: the same
            # matmul / softmax / matmul, plus passes this model never needs (q and k scaled separately, a
            # "safe" softmax for fully masked rows, which windows never have). The lean version of that math:
            scores = torch.matmul(query * self.head_dim**-0.5, key.transpose(-2, -1)).add_(mask)
            return F.dropout(scores.softmax(dim=-1), dropout, self.training) @ value
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)

    def _global_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = tokens.shape
        qkv = self.qkv(tokens).view(batch, height * width, 3, self.num_heads, self.head_dim)
        if qkv.device.type == "cpu":
            # The CPU flash kernel streams every key / value row once per query block: with rows 3C apart in memory
            # (strided views) each lands on its own page, 10-15 % slower at 4096 tokens, more beyond. One copy fixes it.
            query, key, value = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)
        else:
            query, key, value = _heads_first(qkv)
        context = self._attend(query, key, value, None)
        return self.proj(context.transpose(1, 2).reshape(batch, height, width, channels))

    def _window_forward(self, tokens: torch.Tensor, window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
        batch, height, width, channels = tokens.shape
        # Windows as wide as the grid and no shift: row-major order already is window order.
        reorder = any(shift) or window[1] != width
        if reorder:
            order, inverse = _cached_constant(
                ("window_order", batch, height, width, window, shift, tokens.device),
                lambda: window_order(batch, height, width, window, shift, tokens.device),
            )
            tokens = permute_rows(tokens.reshape(-1, channels), order, inverse)
        qkv = self.qkv(tokens.reshape(-1, channels))  # (B*T, 3C) in window order
        groups = window_groups(height, width, window, shift)
        parts = qkv.split([batch * count * rows * cols for (rows, cols), count in groups]) if len(groups) > 1 else [qkv]
        contexts = []
        for part, (region, _) in zip(parts, groups):
            length = region[0] * region[1]
            query, key, value = _heads_first(part.view(-1, length, 3, self.num_heads, self.head_dim))
            bias = self._relative_bias(region, qkv.dtype)[None]  # (1, heads, L, L), broadcast over all regions
            contexts.append(self._attend(query, key, value, bias).transpose(1, 2).reshape(-1, channels))
        context = self.proj(torch.cat(contexts) if len(contexts) > 1 else contexts[0])
        if reorder:
            context = permute_rows(context, inverse, order)
        return context.view(batch, height, width, channels)

    def _reference_forward(
        self, tokens: torch.Tensor, window: tuple[int, int], shift: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Explicit softmax attention; returns the output (B, h, w, C) and the probabilities.

        Probabilities: (B, windows * heads, N, N) for windows (all windows, full shift mask), (B, heads, T, T) global.
        """
        batch, height, width, channels = tokens.shape
        if any(shift):
            tokens = torch.roll(tokens, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        if self.is_global:
            groups = tokens.reshape(batch, 1, height * width, channels)
            mask = None
        else:
            groups = window_partition(tokens, window)
            num_windows = groups.shape[1]
            bias = self._relative_bias(window, torch.float32)
            if any(shift):
                shift_mask = shifted_window_mask(height, width, window, shift, tokens.device)
                mask = bias[None] + shift_mask[:, None]
            else:
                mask = bias[None].expand(num_windows, -1, -1, -1)
            mask = mask.reshape(1, num_windows * self.num_heads, *bias.shape[1:])
        num_groups, length = groups.shape[1], groups.shape[2]
        qkv = self.qkv(groups).view(batch, num_groups, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, batch, num_groups * self.num_heads, length, -1)
        scores = (query @ key.transpose(-2, -1)) * self.head_dim**-0.5
        if mask is not None:
            scores = scores + mask.to(scores.dtype)
        dropout = self.config.attention_probs_dropout_prob if self.training else 0.0
        probs = F.dropout(scores.softmax(dim=-1), dropout, self.training)
        context = (probs @ value).view(batch, num_groups, self.num_heads, length, self.head_dim).transpose(2, 3)
        context = self.proj(context.reshape(batch, num_groups, length, channels))
        if self.is_global:
            tokens = context.view(batch, height, width, channels)
        else:
            tokens = window_merge(context, window, height, width)
        if any(shift):
            tokens = torch.roll(tokens, shifts=shift, dims=(1, 2))
        return tokens, probs

    def forward(
        self, tokens: torch.Tensor, window: tuple[int, int], shift: tuple[int, int], output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if output_attentions or self.config._attn_implementation == "eager":
            tokens, probs = self._reference_forward(tokens, window, shift)
        else:
            probs = None
            tokens = self._global_forward(tokens) if self.is_global else self._window_forward(tokens, window, shift)
        return self.proj_dropout(tokens), probs if output_attentions else None


class SwinIHMLP(nn.Module):
    def __init__(self, config: SwinIHConfig, dim: int):
        super().__init__()
        hidden = int(dim * config.mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(tokens))))


class SwinIHBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block: tokens + attention(norm(tokens)); tokens + mlp(norm(tokens)). (B, h, w, C)."""

    def __init__(self, config: SwinIHConfig, dim: int, num_heads: int, shifted: bool, is_global: bool, drop: float):
        super().__init__()
        self.shifted = shifted and not is_global
        self.drop_path_prob = drop
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = SwinIHAttention(config, dim, num_heads, is_global)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = SwinIHMLP(config, dim)
        self.shift_size = config.shift_size

    def forward(
        self, tokens: torch.Tensor, window: tuple[int, int], output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = tokens.shape[1:3]
        shift = tuple(self.shift_size if self.shifted and side > win else 0 for side, win in zip(grid, window))
        attended, probs = self.attention(self.norm1(tokens), window, shift, output_attentions)
        tokens = add_drop_path(tokens, attended, self.drop_path_prob, self.training)
        tokens = add_drop_path(tokens, self.mlp(self.norm2(tokens)), self.drop_path_prob, self.training)
        return tokens, probs


class SwinIHTransition(nn.Module):
    """Between two stages: change the token width and, if the stages' grids differ, the token resolution.

    Same grid: LayerNorm + linear projection (SwinIH's doubling). Coarser grid: patch merging (2x2 tokens
    concatenated, LayerNorm, linear). Finer grid: patch splitting (LayerNorm, linear to 4x width, pixel shuffle).
    (B, h, w, C_in) -> (B, h', w', C_out).
    """

    def __init__(self, config: SwinIHConfig, dim_in: int, dim_out: int, scale: float):
        super().__init__()
        self.scale = scale
        if scale > 1:
            self.norm = nn.LayerNorm(4 * dim_in, eps=config.layer_norm_eps)
            self.proj = nn.Linear(4 * dim_in, dim_out, bias=False)
        else:
            self.norm = nn.LayerNorm(dim_in, eps=config.layer_norm_eps)
            self.proj = nn.Linear(dim_in, dim_out * (4 if scale < 1 else 1), bias=scale < 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = tokens.shape
        if self.scale > 1:
            tokens = tokens.view(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5)
            tokens = tokens.reshape(batch, height // 2, width // 2, 4 * channels)
            return self.proj(self.norm(tokens))
        tokens = self.proj(self.norm(tokens))
        if self.scale < 1:
            tokens = F.pixel_shuffle(tokens.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        return tokens


class SwinIHPreTrainedModel(PreTrainedModel):
    config: SwinIHConfig
    config_class = SwinIHConfig
    base_model_prefix = "swinih"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SwinIHBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """`set_attn_implementation("eager" | "sdpa")` works at any time: every attention layer reads
        `config._attn_implementation` on each call. (transformers decides this from the module source, looking for
        its AttentionInterface, which windowed attention with a relative position bias does not use.)"""
        return True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
        elif isinstance(module, SwinIHAttention) and not module.is_global:
            init.trunc_normal_(module.relative_position_bias_table, std=self.config.initializer_range)


class SwinIHModel(SwinIHPreTrainedModel):
    """SwinIH backbone: (B, 4, H, W) -> token maps. `last_hidden_state` is (B, C_last, h, w) at the last stage's grid
    of the PADDED input (see `padded_size`); `hidden_states` are the embeddings and each stage's output, (B, C, h, w).
    """

    def __init__(self, config: SwinIHConfig):
        super().__init__(config)
        self.patch_embed = nn.Conv2d(config.num_channels, config.hidden_sizes[0], config.patch_size, config.patch_size)
        self.embed_norm = nn.LayerNorm(config.hidden_sizes[0], eps=config.layer_norm_eps)
        drop_rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        factors = config.stage_resolution_factors
        for stage, (depth, dim, heads) in enumerate(zip(config.depths, config.hidden_sizes, config.num_heads)):
            is_last = stage == config.num_stages - 1
            first_global = depth - config.num_global_layers if is_last else depth
            offset = sum(config.depths[:stage])
            self.stages.append(
                nn.ModuleList(
                    SwinIHBlock(config, dim, heads, block % 2 == 1, block >= first_global, drop_rates[offset + block])
                    for block in range(depth)
                )
            )
            if not is_last:
                scale = factors[stage + 1] / factors[stage]
                self.transitions.append(SwinIHTransition(config, dim, config.hidden_sizes[stage + 1], scale))
        self.final_norm = nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Smallest (H', W') >= (H, W) that every stage's windows tile exactly."""
        return self._padded_side(height), self._padded_side(width)

    def _padded_side(self, side: int) -> int:
        config = self.config
        step = config.pixel_multiple
        padded = max(step, -(-side // step) * step)
        while True:
            grids = [padded // (config.patch_size * f) for f in config.stage_resolution_factors]
            if all(g <= config.window_size or g % config.window_size == 0 for g in grids):
                return padded
            padded += step

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        """Args: pixel_values (B, 4, H, W), H and W already padded (see `padded_size`)."""
        config = self.config
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        return_dict = return_dict if return_dict is not None else config.return_dict
        height, width = pixel_values.shape[-2:]
        if (height, width) != self.padded_size(height, width):
            raise ValueError(
                f"SwinIHModel needs inputs padded to {self.padded_size(height, width)}, got {(height, width)}; "
                "SwinIHForHarmonization pads and crops for you"
            )

        tokens = self.embed_norm(self.patch_embed(pixel_values).permute(0, 2, 3, 1))
        all_hidden = [tokens.permute(0, 3, 1, 2)] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for stage, blocks in enumerate(self.stages):
            window = (min(config.window_size, tokens.shape[1]), min(config.window_size, tokens.shape[2]))
            for block in blocks:
                tokens, probs = block(tokens, window, output_attentions)
                if output_attentions:
                    all_attentions.append(probs)
            if stage < len(self.transitions):
                tokens = self.transitions[stage](tokens)
            else:
                tokens = self.final_norm(tokens)
            if output_hidden_states:
                all_hidden.append(tokens.permute(0, 3, 1, 2))

        last = tokens.permute(0, 3, 1, 2)
        hidden_states = tuple(all_hidden) if output_hidden_states else None
        attentions = tuple(all_attentions) if output_attentions else None
        if not return_dict:
            return tuple(v for v in (last, hidden_states, attentions) if v is not None)
        return BaseModelOutput(last_hidden_state=last, hidden_states=hidden_states, attentions=attentions)


class SwinIHForHarmonization(HarmonizationModelMixin, SwinIHPreTrainedModel):
    """SwinIH with a head back to RGB: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1].

    The input is replicate-padded to what the windows need and the output cropped back. The head maps each token
    of the last stage to its (patch x factor)^2 pixels (a linear layer + pixel shuffle). With
    `config.residual_output` the head predicts a correction added to the composite; with
    `config.blend_background` the composite's background is returned unchanged (`HarmonizationModelMixin.forward`).
    """

    def __init__(self, config: SwinIHConfig):
        super().__init__(config)
        self.swinih = SwinIHModel(config)
        self.upscale = config.patch_size * config.stage_resolution_factors[-1]
        self.head = nn.Linear(config.hidden_sizes[-1], config.num_output_channels * self.upscale**2)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        return self.swinih.padded_size(height, width)

    def predict_correction(self, padded: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        """(B, 4, H', W') padded input -> raw (B, 3, H', W'), hidden states, attentions."""
        outputs = self.swinih(
            padded, output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True
        )
        raw = F.pixel_shuffle(
            self.head(outputs.last_hidden_state.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), self.upscale
        )
        return raw, outputs.hidden_states, outputs.attentions


__all__ = ["SwinIHPreTrainedModel", "SwinIHModel", "SwinIHForHarmonization"]
