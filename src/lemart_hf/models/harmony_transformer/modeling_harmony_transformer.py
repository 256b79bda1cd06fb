"""HT+, the Harmony Transformer (Guo et al. 2021/2022) for image harmonization, as in LEMaRT's Table 3.

(B, 4, H, W) -> CNN encoder (a full-resolution layer, then `num_downsamples` stride-2 layers, channels doubling)
-> tokens at 1 / 2**num_downsamples, projected to `hidden_size`, with a fixed 2-D sine-cosine position embedding
(any input size) -> global self-attention blocks -> back to feature maps -> CNN decoder (bilinear upsampling,
concatenation with the encoder map of the same size, conv) -> the RGB correction -> `HarmonizationModelMixin`
adds it to the composite and keeps the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_harmony_transformer import HarmonyTransformerConfig
from .layers import ConvNormAct, HarmonizationPreTrainedModel, TransformerBlock, sincos_position_embedding_2d
from .modeling_harmonization import HarmonizationModelMixin


class HarmonyTransformerPreTrainedModel(HarmonizationPreTrainedModel):
    config: HarmonyTransformerConfig
    config_class = HarmonyTransformerConfig
    base_model_prefix = "harmony_transformer"
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True


class HarmonyTransformerForHarmonization(HarmonizationModelMixin, HarmonyTransformerPreTrainedModel):
    """HT+: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1]; sides are replicate-padded to a multiple
    of 2**num_downsamples and the output cropped back."""

    def __init__(self, config: HarmonyTransformerConfig):
        super().__init__(config)
        norm, depth = config.norm_type, config.num_downsamples
        widths = [config.base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList([ConvNormAct(config.num_channels, widths[0], 7, norm_type=norm)])
        self.encoder.extend(ConvNormAct(widths[i], widths[i + 1], 3, 2, norm) for i in range(depth))
        self.to_tokens = nn.Linear(widths[-1], config.hidden_size)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                config.hidden_size,
                config.num_attention_heads,
                config.mlp_ratio,
                True,
                config.hidden_dropout_prob,
                config.attention_probs_dropout_prob,
                config.layer_norm_eps,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.token_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.from_tokens = nn.Linear(config.hidden_size, widths[-1])
        # Decoder level i: upsample widths[i + 1] -> concatenate the encoder's widths[i] map -> conv to widths[i].
        self.decoder = nn.ModuleList(
            ConvNormAct(widths[i + 1] + widths[i], widths[i], 3, norm_type=norm) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], config.num_output_channels, 3, padding=1)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Multiples of the total downsampling; at least 2 pixels a side after the last one (for its normalisation)."""
        step = 2**self.config.num_downsamples
        return max(2 * step, -(-height // step) * step), max(2 * step, -(-width // step) * step)

    def predict_correction(self, padded: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        """(B, 4, H', W') -> raw (B, 3, H', W'); hidden states: encoder maps, the token map, decoder maps."""
        skips = []
        features = padded
        for layer in self.encoder:
            features = layer(features)
            skips.append(features)
        batch, _, rows, cols = features.shape
        tokens = self.to_tokens(features.flatten(2).transpose(1, 2))
        tokens = tokens + sincos_position_embedding_2d(rows, cols, tokens.shape[-1], tokens.device, tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        features = self.from_tokens(self.token_norm(tokens)).transpose(1, 2).reshape(batch, -1, rows, cols)
        hidden_states = [*skips, features] if output_hidden_states else None
        for level in reversed(range(len(self.decoder))):
            skip = skips[level]
            features = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            features = self.decoder[level](torch.cat([features, skip], dim=1))
            if output_hidden_states:
                hidden_states.append(features)
        return (self.head(features), tuple(hidden_states) if output_hidden_states else None, None)


__all__ = ["HarmonyTransformerPreTrainedModel", "HarmonyTransformerForHarmonization"]
