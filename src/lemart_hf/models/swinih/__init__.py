"""SwinIH: configuration, model and image processor."""

from .configuration_swinih import SWINIH_PRESETS, SwinIHConfig
from .image_processing_swinih import SwinIHImageProcessor
from .modeling_swinih import SwinIHForHarmonization, SwinIHModel, SwinIHPreTrainedModel

__all__ = [
    "SWINIH_PRESETS",
    "SwinIHConfig",
    "SwinIHForHarmonization",
    "SwinIHImageProcessor",
    "SwinIHModel",
    "SwinIHPreTrainedModel",
]
