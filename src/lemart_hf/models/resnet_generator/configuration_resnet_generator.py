"""Configuration of the ResNet generator for harmonization: pix2pixHD's global generator with the downsampling
removed, so every residual block runs at full resolution (LEMaRT, CVPR 2023, Table 3)."""

from __future__ import annotations

from .configuration_harmonization import HarmonizationConfig
from .layers import NORM_TYPES

RESNET_GENERATOR_PRESETS: dict[str, dict] = {
    # pix2pixHD's global generator width and depth (64 channels, 9 residual blocks).
    "resnet-generator-base": {},
    # Small enough to train on 2 CPU cores.
    "resnet-generator-tiny": {"hidden_size": 32, "num_blocks": 6},
}


class ResNetGeneratorConfig(HarmonizationConfig):
    r"""Configuration of [`ResNetGeneratorForHarmonization`].

    Args:
        hidden_size (`int`, defaults to 64): channels of every full-resolution feature map (pix2pixHD's `ngf`).
        num_blocks (`int`, defaults to 9): residual blocks.
        norm_type (`str`, defaults to `"instance"`): `"instance"` (pix2pixHD), `"batch"`, `"group"` or `"none"`.
        padding_mode (`str`, defaults to `"reflect"`): convolution padding (pix2pixHD reflects).
        **kwargs: the options every harmonization model shares (`HarmonizationConfig`) and `PretrainedConfig`'s.
    """

    model_type = "lemart_resnet_generator"
    presets = RESNET_GENERATOR_PRESETS
    default_preset = "resnet-generator-base"

    def __init__(
        self,
        hidden_size: int = 64,
        num_blocks: int = 9,
        norm_type: str = "instance",
        padding_mode: str = "reflect",
        **kwargs,
    ):
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        self.check_counts(1, hidden_size=hidden_size)
        self.check_counts(0, num_blocks=num_blocks)
        if padding_mode not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"padding_mode must be 'zeros', 'reflect' or 'replicate', got {padding_mode!r}")
        self.hidden_size = hidden_size
        self.num_blocks = num_blocks
        self.norm_type = norm_type
        self.padding_mode = padding_mode
        super().__init__(**kwargs)
