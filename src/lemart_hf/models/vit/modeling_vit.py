"""ViT-IH: a plain Vision Transformer for image harmonization (the ViT of LEMaRT's Table 3).

(B, 4, H, W) -> patch tokens (B, T, C) with a learned position embedding (interpolated to the input's grid) ->
global self-attention blocks -> LayerNorm -> a linear head that writes each token's patch of RGB correction
(pixel shuffle) -> `HarmonizationModelMixin` adds it to the composite and keeps the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .configuration_vit import ViTIHConfig
from .layers import HarmonizationPreTrainedModel, TransformerBlock
from .modeling_harmonization import HarmonizationModelMixin


class ViTIHPreTrainedModel(HarmonizationPreTrainedModel):
    config: ViTIHConfig
    config_class = ViTIHConfig
    base_model_prefix = "vit"
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ViTIHForHarmonization):
            init.trunc_normal_(module.position_embedding, std=self.config.initializer_range)


class ViTIHForHarmonization(HarmonizationModelMixin, ViTIHPreTrainedModel):
    """ViT-IH: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1]; sides are replicate-padded to a
    multiple of the patch size and the output cropped back."""

    def __init__(self, config: ViTIHConfig):
        super().__init__(config)
        patch, dim = config.patch_size, config.hidden_size
        self.patch_embed = nn.Conv2d(config.num_channels, dim, patch, patch)
        grid = config.image_size // patch
        self.position_embedding = nn.Parameter(torch.zeros(1, dim, grid, grid))
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                config.num_attention_heads,
                config.mlp_ratio,
                config.qkv_bias,
                config.hidden_dropout_prob,
                config.attention_probs_dropout_prob,
                config.layer_norm_eps,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_output_channels * patch**2)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        patch = self.config.patch_size
        return max(patch, -(-height // patch) * patch), max(patch, -(-width // patch) * patch)

    def _position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """The learned (1, C, g, g) embedding at a (rows, cols) token grid, bicubic-interpolated: (1, rows*cols, C)."""
        embedding = self.position_embedding
        if embedding.shape[-2:] != (rows, cols):
            embedding = F.interpolate(embedding, size=(rows, cols), mode="bicubic", align_corners=False)
        return embedding.flatten(2).transpose(1, 2)

    def predict_correction(self, padded: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        """(B, 4, H', W') -> raw (B, 3, H', W'); hidden states: the token maps (B, C, H'/p, W'/p) after each block."""
        features = self.patch_embed(padded)
        batch, dim, rows, cols = features.shape
        tokens = features.flatten(2).transpose(1, 2) + self._position_embedding(rows, cols).to(features.dtype)
        hidden_states = []
        for block in self.blocks:
            tokens = block(tokens)
            if output_hidden_states:
                hidden_states.append(tokens.transpose(1, 2).reshape(batch, dim, rows, cols))
        patches = self.head(self.norm(tokens)).transpose(1, 2).reshape(batch, -1, rows, cols)
        raw = F.pixel_shuffle(patches, self.config.patch_size)
        return raw, tuple(hidden_states) if output_hidden_states else None, None


__all__ = ["ViTIHPreTrainedModel", "ViTIHForHarmonization"]
