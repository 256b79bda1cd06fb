"""What the harmonization architectures other than SwinIH (ViT, ResNet generator, HRNet, HT+) share: building blocks
and the `PreTrainedModel` base with their weight init.

Feature maps are channels first, (B, C, H, W); token sequences are (B, T, C). Each model folder links to this file
(a symbolic link of the same name) so that a saved model folder with remote code is self-contained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer

NORM_TYPES = ("batch", "instance", "group", "none")


def norm_2d(norm_type: str, channels: int) -> nn.Module:
    """A normalisation of (B, C, H, W) maps: `"batch"`, `"instance"` (affine, as in pix2pixHD), `"group"` (8 groups
    or fewer), or `"none"`."""
    if norm_type == "batch":
        return nn.BatchNorm2d(channels)
    if norm_type == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm_type == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if norm_type == "none":
        return nn.Identity()
    raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")


class ConvNormAct(nn.Sequential):
    """Conv2d ("same" padding for odd kernels, `stride` divides the size) -> norm -> ReLU (unless `act=False`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm_type: str = "batch",
        act: bool = True,
        padding_mode: str = "zeros",
    ):
        layers = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=kernel_size // 2,
                bias=norm_type == "none",
                padding_mode=padding_mode,
            ),
            norm_2d(norm_type, out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(GradientCheckpointingLayer):
    """`x + conv-norm-ReLU-conv-norm(x)` at constant width and size (pix2pixHD's ResnetBlock, HRNet's BasicBlock).

    HRNet applies a ReLU after the sum (`relu_after_sum=True`); pix2pixHD does not.
    """

    def __init__(self, channels: int, norm_type: str, padding_mode: str = "zeros", relu_after_sum: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm_type=norm_type, padding_mode=padding_mode),
            ConvNormAct(channels, channels, 3, norm_type=norm_type, act=False, padding_mode=padding_mode),
        )
        self.relu_after_sum = relu_after_sum

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.body(hidden)
        return F.relu(hidden) if self.relu_after_sum else hidden


class SelfAttention(nn.Module):
    """Multi-head self-attention over all tokens: fused QKV projection, `scaled_dot_product_attention` (flash /
    memory-efficient kernels where available; no (T, T) matrix is kept), output projection. (B, T, C) -> (B, T, C)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attention_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by its {num_heads} attention heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attention_dropout = attention_dropout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        qkv = self.qkv(tokens).view(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        dropout = self.attention_dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=dropout)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, dim))


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm transformer encoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`; (B, T, C) -> (B, T, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attention = SelfAttention(dim, num_heads, qkv_bias, attention_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.dropout(self.attention(self.norm1(tokens)))
        return tokens + self.dropout(self.mlp(self.norm2(tokens)))


def sincos_position_embedding_2d(
    height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE / ViTDet style) for a (height, width) token grid, any size.

    Returns (height * width, dim), rows in raster order; half of the channels encode the row, half the column.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * frequencies
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * frequencies
    rows = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    cols = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, dim).to(dtype)


class HarmonizationPreTrainedModel(PreTrainedModel):
    """Base of the `PreTrainedModel` classes of the architectures other than SwinIH: input name and modality,
    gradient checkpointing (their blocks are `GradientCheckpointingLayer`s), and the weight init.

    Init: linear layers truncated normal (`config.initializer_range`); convolutions He init (fan-out, ReLU), as in
    ResNet / HRNet; norms as `PreTrainedModel` does; the model's `head` (the layer that writes the RGB correction)
    zero, so a residual model starts as the exact identity and its first steps cannot make the composite worse.
    Biases zero. Subclasses set `config_class`, `base_model_prefix` and `_no_split_modules`.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            return
        if module is getattr(self, "head", None):
            init.zeros_(module.weight)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
        else:
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            init.zeros_(module.bias)
