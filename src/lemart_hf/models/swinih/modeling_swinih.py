"""SwinIH: a Swin transformer for image harmonization at full token resolution (LEMaRT, CVPR 2023, §3.4).

Tokens are kept channels-last, `(B, h, w, C)`, through the whole network. Window attention runs as one batched
`scaled_dot_product_attention` call with the windows folded into the head dimension, so the relative position
bias and the shift mask form one additive mask `(1, windows * heads, N, N)` shared by the batch; the global
layer is plain SDPA over all tokens without a mask, so fused (flash / memory-efficient) kernels apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput

from .configuration_swinih import SwinIHConfig
from .modeling_harmonization import HarmonizationOutput, finish_harmonization, pad_to_multiple, split_pixel_values


def drop_path(hidden: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability `drop_prob`."""
    if drop_prob == 0.0 or not training:
        return hidden
    keep = 1.0 - drop_prob
    shape = (hidden.shape[0],) + (1,) * (hidden.ndim - 1)
    return hidden * hidden.new_empty(shape).bernoulli_(keep).div_(keep)


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
        self._index_cache: dict[tuple, torch.Tensor] = {}
        self._shift_mask_cache: dict[tuple, torch.Tensor] = {}

    def _cached_index(self, window: tuple[int, int], device: torch.device) -> torch.Tensor:
        key = (window, device)
        if key not in self._index_cache:
            self._index_cache[key] = relative_position_index(window, self.config.window_size, device)
        return self._index_cache[key]

    def _cached_shift_mask(self, height, width, window: tuple[int, int], shift: tuple[int, int], device):
        key = (height, width, window, shift, device)
        if key not in self._shift_mask_cache:
            self._shift_mask_cache[key] = shifted_window_mask(height, width, window, shift, device)
        return self._shift_mask_cache[key]

    def _window_mask(self, height, width, window: tuple[int, int], shift: tuple[int, int], dtype) -> torch.Tensor:
        """Relative bias + shift mask as one additive mask (1, num_windows * heads, N, N) in `dtype`."""
        table = self.relative_position_bias_table
        index = self._cached_index(window, table.device)
        bias = table[index].permute(2, 0, 1)  # (heads, N, N)
        num_windows = (height // window[0]) * (width // window[1])
        if any(shift):
            mask = bias[None] + self._cached_shift_mask(height, width, window, shift, table.device)[:, None]
        else:
            mask = bias[None].expand(num_windows, -1, -1, -1)
        return mask.reshape(1, num_windows * self.num_heads, *bias.shape[1:]).to(dtype)

    def forward(
        self, tokens: torch.Tensor, window: tuple[int, int], shift: tuple[int, int], output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, height, width, channels = tokens.shape
        if any(shift):
            tokens = torch.roll(tokens, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        if self.is_global:
            groups = tokens.reshape(batch, 1, height * width, channels)
            mask = None
        else:
            groups = window_partition(tokens, window)
            mask = self._window_mask(height, width, window, shift, groups.dtype)
        num_groups, length = groups.shape[1], groups.shape[2]

        qkv = self.qkv(groups).view(batch, num_groups, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, batch, num_groups * self.num_heads, length, -1)
        dropout = self.config.attention_probs_dropout_prob if self.training else 0.0
        probs = None
        if output_attentions or self.config._attn_implementation == "eager":
            scores = (query @ key.transpose(-2, -1)) * self.head_dim**-0.5
            if mask is not None:
                scores = scores + mask
            probs = F.dropout(scores.softmax(dim=-1), dropout, self.training)
            context = probs @ value
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)

        context = context.view(batch, num_groups, self.num_heads, length, self.head_dim).transpose(2, 3)
        context = self.proj_dropout(self.proj(context.reshape(batch, num_groups, length, channels)))
        if self.is_global:
            tokens = context.view(batch, height, width, channels)
        else:
            tokens = window_merge(context, window, height, width)
        if any(shift):
            tokens = torch.roll(tokens, shifts=shift, dims=(1, 2))
        return tokens, probs if output_attentions else None


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
        tokens = tokens + drop_path(attended, self.drop_path_prob, self.training)
        tokens = tokens + drop_path(self.mlp(self.norm2(tokens)), self.drop_path_prob, self.training)
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
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        )
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


class SwinIHForHarmonization(SwinIHPreTrainedModel):
    """SwinIH with a head back to RGB: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1].

    The input is replicate-padded to what the windows need and the output cropped back. The head maps each token
    of the last stage to its (patch x factor)^2 pixels (a linear layer + pixel shuffle). With
    `config.residual_output` the head predicts a correction added to the composite; with
    `config.blend_background` the composite's background is returned unchanged.
    """

    def __init__(self, config: SwinIHConfig):
        super().__init__(config)
        self.swinih = SwinIHModel(config)
        self.upscale = config.patch_size * config.stage_resolution_factors[-1]
        self.head = nn.Linear(config.hidden_sizes[-1], config.num_output_channels * self.upscale**2)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        loss_type: str | None = None,
    ) -> HarmonizationOutput | tuple:
        """
        Args:
            pixel_values: (B, 4, H, W): composite RGB in [0, 1] and the mask in [0, 1] (1 = foreground).
            labels: (B, 3, H, W) in [0, 1], the real image; gives `loss`.
            loss_type: `"mse"` or `"fn_mse"`; defaults to `config.loss_type`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        composite, mask = split_pixel_values(pixel_values)
        height, width = pixel_values.shape[-2:]
        padded_h, padded_w = self.swinih.padded_size(height, width)
        padded = pad_to_multiple(pixel_values, padded_h, padded_w)
        outputs = self.swinih(
            padded, output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True
        )
        raw = F.pixel_shuffle(self.head(outputs.last_hidden_state.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), self.upscale)
        loss, harmonized = finish_harmonization(
            raw[..., :height, :width],
            composite,
            mask,
            labels,
            residual_output=self.config.residual_output,
            blend=self.config.blend_background,
            loss_type=loss_type or self.config.loss_type,
            min_area=self.config.fn_mse_min_area,
        )
        output = HarmonizationOutput(
            loss=loss, harmonized=harmonized, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


__all__ = ["SwinIHPreTrainedModel", "SwinIHModel", "SwinIHForHarmonization"]
