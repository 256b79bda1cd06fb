"""Configuration of SwinIH, the Swin-based image harmonization transformer of LEMaRT (CVPR 2023, §3.4)."""

from __future__ import annotations

from .configuration_harmonization import HarmonizationConfig

SWINIH_PRESETS: dict[str, dict] = {
    # The paper's SwinIH.
    "swinih-base": {},
    # Small enough to train on 2 CPU cores (2.1 M parameters): same layout, narrower, smaller windows.
    "swinih-tiny": {"embed_dim": 48, "depths": [2, 2, 4], "num_heads": [3, 6, 12], "window_size": 8},
    # Mid-size (5.3 M parameters, near the geometric mean of tiny and base): wider and deeper than tiny, with heads
    # of 32 channels like the paper's; a training step at 128 px costs about 1.5x tiny's on a CPU in bf16.
    "swinih-small": {"embed_dim": 64, "depths": [2, 2, 6], "num_heads": [2, 4, 8], "window_size": 8},
    # Ablation variants of the paper (Table 4), each selected by config alone.
    "swinih-local": {"num_global_layers": 0},
    "swinih-ms": {"stage_resolution_factors": [1, 2, 1]},
    "swin-t": {
        "embed_dim": 96,
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "window_size": 8,
        "stage_resolution_factors": [1, 2, 4, 8],
        "num_global_layers": 0,
    },
}


class SwinIHConfig(HarmonizationConfig):
    r"""Configuration of [`SwinIHModel`] and [`SwinIHForHarmonization`].

    The defaults are the paper's SwinIH: 4 input channels (composite RGB + mask), patch size 4, three stages of
    Swin blocks at FULL token resolution with depths (3, 3, 5), width 128 doubled by a linear projection after
    stages 1 and 2 (128 -> 256 -> 512), window 32 shifted by 16 on alternate blocks, and a last layer of global
    self-attention (every token attends to every token).

    Args:
        patch_size (`int`, defaults to 4): side of the square patch embedded into one token.
        embed_dim (`int`, defaults to 128): token width of the first stage.
        depths (`list[int]`, defaults to `[3, 3, 5]`): Swin blocks per stage.
        num_heads (`list[int]`, defaults to `[4, 8, 16]`): attention heads per stage.
        hidden_sizes (`list[int]`, *optional*): token width per stage; defaults to `embed_dim * 2**i`.
        window_size (`int`, defaults to 32): side of the attention window, in tokens. A stage whose token grid
            is smaller than the window attends over the whole grid instead.
        shift_size (`int`, *optional*): shift of the windows on odd blocks; defaults to `window_size // 2`.
        num_global_layers (`int`, defaults to 1): how many of the last blocks of the last stage use global
            self-attention instead of windows. 0 gives SwinIH-Local.
        stage_resolution_factors (`list[int]`, *optional*): per stage, how much coarser its token grid is than
            the patch grid (powers of 2). Defaults to all ones (SwinIH). Going coarser uses patch merging,
            going finer uses patch splitting. The head maps each token of the last stage straight to its
            (patch_size x that stage's factor)^2 pixels (32 x 32 for `swin-t`).
        mlp_ratio (`float`, defaults to 4.0): MLP hidden width / token width.
        qkv_bias (`bool`, defaults to `True`): bias in the fused query/key/value projection.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after the MLP and attention projections.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, linearly increasing over blocks.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        **kwargs: the options every harmonization model shares (`HarmonizationConfig`: `residual_output`,
            `blend_background`, `loss_type`, `fn_mse_min_area`, `initializer_range`, ...) and `PretrainedConfig`'s.
    """

    model_type = "lemart_swinih"
    presets = SWINIH_PRESETS
    default_preset = "swinih-base"

    def __init__(
        self,
        patch_size: int = 4,
        embed_dim: int = 128,
        depths: list[int] | tuple[int, ...] = (3, 3, 5),
        num_heads: list[int] | tuple[int, ...] = (4, 8, 16),
        hidden_sizes: list[int] | tuple[int, ...] | None = None,
        window_size: int = 32,
        shift_size: int | None = None,
        num_global_layers: int = 1,
        stage_resolution_factors: list[int] | tuple[int, ...] | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.1,
        layer_norm_eps: float = 1e-5,
        **kwargs,
    ):
        depths = list(depths)
        num_heads = list(num_heads)
        num_stages = len(depths)
        hidden_sizes = list(hidden_sizes) if hidden_sizes is not None else [embed_dim * 2**i for i in range(num_stages)]
        factors = list(stage_resolution_factors) if stage_resolution_factors is not None else [1] * num_stages
        shift_size = window_size // 2 if shift_size is None else shift_size
        self.check_counts(1, depths=depths, num_heads=num_heads, patch_size=patch_size, embed_dim=embed_dim)
        self.check_counts(1, hidden_sizes=hidden_sizes, window_size=window_size)
        if not (len(num_heads) == len(hidden_sizes) == len(factors) == num_stages):
            raise ValueError(
                f"depths ({num_stages}), num_heads ({len(num_heads)}), hidden_sizes ({len(hidden_sizes)}) and "
                f"stage_resolution_factors ({len(factors)}) must have one entry per stage"
            )
        for size, heads in zip(hidden_sizes, num_heads):
            if size % heads:
                raise ValueError(f"hidden size {size} is not divisible by its {heads} attention heads")
        for previous, factor in zip([1] + factors, factors):
            if factor < 1 or factor & (factor - 1) or max(factor, previous) // min(factor, previous) > 2:
                raise ValueError(
                    f"stage_resolution_factors must be powers of 2 that change by at most 2x per stage, got {factors}"
                )
        if not 0 <= num_global_layers <= depths[-1]:
            raise ValueError(f"num_global_layers must be in [0, {depths[-1]}], got {num_global_layers}")
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size}")

        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = num_heads
        self.hidden_sizes = hidden_sizes
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_global_layers = num_global_layers
        self.stage_resolution_factors = factors
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.layer_norm_eps = layer_norm_eps
        super().__init__(**kwargs)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def pixel_multiple(self) -> int:
        """Input sides are padded to a multiple of this before the patch grid is made (patch x coarsest stage)."""
        return self.patch_size * max(self.stage_resolution_factors)
