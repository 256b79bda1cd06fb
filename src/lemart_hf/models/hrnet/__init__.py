"""HRNet-IH: configuration and model."""

from .configuration_hrnet import HRNET_PRESETS, HRNetIHConfig
from .modeling_hrnet import HRNetIHForHarmonization, HRNetIHPreTrainedModel

__all__ = ["HRNET_PRESETS", "HRNetIHConfig", "HRNetIHForHarmonization", "HRNetIHPreTrainedModel"]
