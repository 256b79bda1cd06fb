"""HT+, the Harmony Transformer: configuration and model."""

from .configuration_harmony_transformer import HARMONY_TRANSFORMER_PRESETS, HarmonyTransformerConfig
from .modeling_harmony_transformer import HarmonyTransformerForHarmonization, HarmonyTransformerPreTrainedModel

__all__ = [
    "HARMONY_TRANSFORMER_PRESETS",
    "HarmonyTransformerConfig",
    "HarmonyTransformerForHarmonization",
    "HarmonyTransformerPreTrainedModel",
]
