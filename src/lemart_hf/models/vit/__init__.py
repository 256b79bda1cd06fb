"""ViT-IH: configuration and model."""

from .configuration_vit import VIT_PRESETS, ViTIHConfig
from .modeling_vit import ViTIHForHarmonization, ViTIHPreTrainedModel

__all__ = ["VIT_PRESETS", "ViTIHConfig", "ViTIHForHarmonization", "ViTIHPreTrainedModel"]
