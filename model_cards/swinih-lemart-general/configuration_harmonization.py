"""What every harmonization model's configuration shares: the input/output contract, the loss and named presets.

Every architecture maps `pixel_values` (B, 4, H, W) = [composite RGB, mask] to RGB (B, 3, H, W); the options below
are the ones its `...ForHarmonization` head needs (see `modeling_harmonization.finish_harmonization`). Each model
folder links to this file (a symbolic link of the same name) so that a saved folder with remote code is
self-contained.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class HarmonizationConfig(PretrainedConfig):
    r"""Base class of the configurations of lemart_hf's harmonization models.

    Args:
        num_channels (`int`, defaults to 4): input channels of `pixel_values` (RGB composite + mask).
        num_output_channels (`int`, defaults to 3): channels of the harmonized image.
        initializer_range (`float`, defaults to 0.02): std of the truncated normal init of linear layers.
        residual_output (`bool`, defaults to `True`): predict a correction added to the composite rather than
            the image itself (the model starts close to the identity, which is what harmonization needs).
        blend_background (`bool`, defaults to `True`): return `mask * prediction + (1 - mask) * composite`, so
            the composite's background is kept exactly.
        loss_type (`str`, defaults to `"mse"`): `"mse"` (pre-training) or `"fn_mse"` (foreground-normalized MSE
            of iS2AM, the fine-tuning loss).
        fn_mse_min_area (`float`, defaults to 100.0): lower bound on the foreground area (in pixels) in the
            denominator of the foreground-normalized MSE.

    Subclasses set `model_type` and `presets` (name -> keyword overrides of the defaults; names are unique across
    architectures and start with the architecture's name, e.g. `"vit-tiny"`), and `default_preset`.
    """

    presets = {}  # name -> keyword overrides (a class attribute, not a config field)
    default_preset = ""

    def __init__(
        self,
        num_channels: int = 4,
        num_output_channels: int = 3,
        initializer_range: float = 0.02,
        residual_output: bool = True,
        blend_background: bool = True,
        loss_type: str = "mse",
        fn_mse_min_area: float = 100.0,
        **kwargs,
    ):
        if loss_type not in ("mse", "fn_mse"):
            raise ValueError(f"loss_type must be 'mse' or 'fn_mse', got {loss_type!r}")
        if num_channels != 4:
            raise ValueError(f"num_channels must be 4 (composite RGB + mask), got {num_channels}")
        self.num_channels = num_channels
        self.num_output_channels = num_output_channels
        self.initializer_range = initializer_range
        self.residual_output = residual_output
        self.blend_background = blend_background
        self.loss_type = loss_type
        self.fn_mse_min_area = fn_mse_min_area
        super().__init__(**kwargs)

    @staticmethod
    def check_counts(minimum: int, **counts) -> None:
        """`ValueError` naming the first of ``counts`` (an int or a list of ints: layers, heads, widths, ...) that is
        not an int >= ``minimum``."""
        for name, value in counts.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            if not all(isinstance(v, int) and v >= minimum for v in values):
                raise ValueError(f"{name} must be made of ints >= {minimum}, got {value!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "HarmonizationConfig":
        """Build a named preset (see the class's `presets`), with keyword overrides."""
        if name not in cls.presets:
            architecture = cls.__name__.removesuffix("Config")
            raise ValueError(f"unknown {architecture} preset {name!r}; choose one of {sorted(cls.presets)}")
        return cls(**{**cls.presets[name], **overrides})
