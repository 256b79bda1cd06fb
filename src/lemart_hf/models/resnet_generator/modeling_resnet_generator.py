"""The ResNet generator for harmonization: pix2pixHD's global generator without its down/upsampling.

(B, 4, H, W) -> 7x7 conv -> `num_blocks` residual blocks, all at full resolution and `hidden_size` channels ->
7x7 conv to the RGB correction -> `HarmonizationModelMixin` adds it to the composite and keeps the background.
Fully convolutional: any input size (one under 4 pixels a side is padded for the 7x7 reflect padding, then cropped).
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_resnet_generator import ResNetGeneratorConfig
from .layers import ConvNormAct, HarmonizationPreTrainedModel, ResidualBlock
from .modeling_harmonization import HarmonizationModelMixin


class ResNetGeneratorPreTrainedModel(HarmonizationPreTrainedModel):
    config: ResNetGeneratorConfig
    config_class = ResNetGeneratorConfig
    base_model_prefix = "generator"
    _no_split_modules = ["ResidualBlock"]


class ResNetGeneratorForHarmonization(HarmonizationModelMixin, ResNetGeneratorPreTrainedModel):
    """ResNet generator: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: ResNetGeneratorConfig):
        super().__init__(config)
        width, norm, padding = config.hidden_size, config.norm_type, config.padding_mode
        self.stem = ConvNormAct(config.num_channels, width, 7, norm_type=norm, padding_mode=padding)
        self.blocks = nn.ModuleList(ResidualBlock(width, norm, padding) for _ in range(config.num_blocks))
        self.head = nn.Conv2d(width, config.num_output_channels, 7, padding=3, padding_mode=padding)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The input itself, at least 4 pixels a side (the 7x7 convolutions reflect-pad 3 pixels)."""
        return max(height, 4), max(width, 4)

    def predict_correction(self, padded: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        """(B, 4, H, W) -> raw (B, 3, H, W); hidden states: the (B, C, H, W) map after the stem and each block."""
        features = self.stem(padded)
        hidden_states = [features] if output_hidden_states else None
        for block in self.blocks:
            features = block(features)
            if output_hidden_states:
                hidden_states.append(features)
        return (self.head(features), tuple(hidden_states) if output_hidden_states else None, None)


__all__ = ["ResNetGeneratorPreTrainedModel", "ResNetGeneratorForHarmonization"]
