"""Configuration of ViT-IH: a plain Vision Transformer as a harmonization model (LEMaRT, CVPR 2023, Table 3)."""

from __future__ import annotations

from .configuration_harmonization import HarmonizationConfig

VIT_PRESETS: dict[str, dict] = {
    # ViT-B/16: the standard plain ViT.
    "vit-base": {},
    # Small enough to train on 2 CPU cores (2.1 M parameters).
    "vit-tiny": {"patch_size": 8, "hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3},
}


class ViTIHConfig(HarmonizationConfig):
    r"""Configuration of [`ViTIHForHarmonization`]: patch embedding of the 4-channel input, global self-attention
    over all patch tokens in every layer, and a linear patch head back to full resolution.

    Args:
        patch_size (`int`, defaults to 16): side of the square patch embedded into one token.
        hidden_size (`int`, defaults to 768): token width.
        num_hidden_layers (`int`, defaults to 12): transformer blocks.
        num_attention_heads (`int`, defaults to 12): attention heads per block.
        mlp_ratio (`float`, defaults to 4.0): MLP hidden width / token width.
        qkv_bias (`bool`, defaults to `True`): bias in the fused query/key/value projection.
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        image_size (`int`, defaults to 256): side the learned position embedding is laid out for; other sizes
            interpolate it (bicubic), so any input size works.
        **kwargs: the options every harmonization model shares (`HarmonizationConfig`) and `PretrainedConfig`'s.
    """

    model_type = "lemart_vit"
    presets = VIT_PRESETS
    default_preset = "vit-base"

    def __init__(
        self,
        patch_size: int = 16,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        image_size: int = 256,
        **kwargs,
    ):
        self.check_counts(1, patch_size=patch_size, hidden_size=hidden_size, num_attention_heads=num_attention_heads)
        self.check_counts(0, num_hidden_layers=num_hidden_layers)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.image_size = image_size
        super().__init__(**kwargs)
