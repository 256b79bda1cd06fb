"""The ResNet generator (pix2pixHD, downsampling removed): configuration and model."""

from .configuration_resnet_generator import RESNET_GENERATOR_PRESETS, ResNetGeneratorConfig
from .modeling_resnet_generator import ResNetGeneratorForHarmonization, ResNetGeneratorPreTrainedModel

__all__ = [
    "RESNET_GENERATOR_PRESETS",
    "ResNetGeneratorConfig",
    "ResNetGeneratorForHarmonization",
    "ResNetGeneratorPreTrainedModel",
]
