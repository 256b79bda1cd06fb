"""Configuration of HT+, the Harmony Transformer (Guo et al., ICCV 2021 / TPAMI 2022) as used in LEMaRT's Table 3:
a CNN encoder, a transformer over its tokens, a CNN decoder."""

from __future__ import annotations

from .configuration_harmonization import HarmonizationConfig
from .layers import NORM_TYPES

HARMONY_TRANSFORMER_PRESETS: dict[str, dict] = {
    # 9 transformer layers of width 256 over tokens at 1/4 of the input size.
    "harmony-transformer-base": {},
    # Small enough to train on 2 CPU cores.
    "harmony-transformer-tiny": {
        "base_channels": 16,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
    },
}


class HarmonyTransformerConfig(HarmonizationConfig):
    r"""Configuration of [`HarmonyTransformerForHarmonization`].

    Args:
        base_channels (`int`, defaults to 64): channels of the encoder's full-resolution layer; doubled at each
            downsampling.
        num_downsamples (`int`, defaults to 2): stride-2 encoder layers; tokens are at 1 / 2**num_downsamples.
        hidden_size (`int`, defaults to 256): token width of the transformer.
        num_hidden_layers (`int`, defaults to 9): transformer blocks (global self-attention).
        num_attention_heads (`int`, defaults to 8): attention heads per block.
        mlp_ratio (`float`, defaults to 2.0): MLP hidden width / token width.
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        norm_type (`str`, defaults to `"instance"`): normalisation of the CNN layers.
        **kwargs: the options every harmonization model shares (`HarmonizationConfig`) and `PretrainedConfig`'s.
    """

    model_type = "lemart_harmony_transformer"
    presets = HARMONY_TRANSFORMER_PRESETS
    default_preset = "harmony-transformer-base"

    def __init__(
        self,
        base_channels: int = 64,
        num_downsamples: int = 2,
        hidden_size: int = 256,
        num_hidden_layers: int = 9,
        num_attention_heads: int = 8,
        mlp_ratio: float = 2.0,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        norm_type: str = "instance",
        **kwargs,
    ):
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        self.check_counts(1, base_channels=base_channels, hidden_size=hidden_size)
        self.check_counts(1, num_attention_heads=num_attention_heads)
        self.check_counts(0, num_downsamples=num_downsamples, num_hidden_layers=num_hidden_layers)
        if hidden_size % num_attention_heads or hidden_size % 4:
            raise ValueError(
                f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads} and by 4 "
                "(2-D sine-cosine position embedding)"
            )
        self.base_channels = base_channels
        self.num_downsamples = num_downsamples
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.mlp_ratio = mlp_ratio
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.norm_type = norm_type
        super().__init__(**kwargs)
