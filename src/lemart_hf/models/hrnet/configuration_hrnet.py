"""Configuration of HRNet-IH: a small High-Resolution Network for harmonization (LEMaRT, CVPR 2023, Table 3)."""

from __future__ import annotations

from .configuration_harmonization import HarmonizationConfig
from .layers import NORM_TYPES

HRNET_PRESETS: dict[str, dict] = {
    # HRNet-W18-small-like widths, with a full-resolution first branch.
    "hrnet-base": {},
    # Small enough to train on 2 CPU cores.
    "hrnet-tiny": {"hidden_sizes": [16, 32, 64], "num_blocks": 1},
}


class HRNetIHConfig(HarmonizationConfig):
    r"""Configuration of [`HRNetIHForHarmonization`].

    The network keeps a branch at full resolution and adds one at half the resolution of the previous one per
    stage (branch `i` has `hidden_sizes[i]` channels at 1 / 2**i of the input size); after each stage an exchange
    unit lets every branch receive every other one (strided convolutions down, 1x1 convolution + bilinear
    upsampling up). The head upsamples all branches to full resolution, concatenates and fuses them.

    Args:
        hidden_sizes (`list[int]`, defaults to `[18, 36, 72, 144]`): channels per branch; their number is the
            number of stages.
        num_blocks (`int`, defaults to 2): residual blocks per branch in each stage.
        norm_type (`str`, defaults to `"batch"`): `"batch"` (HRNet), `"instance"`, `"group"` or `"none"`.
        **kwargs: the options every harmonization model shares (`HarmonizationConfig`) and `PretrainedConfig`'s.
    """

    model_type = "lemart_hrnet"
    presets = HRNET_PRESETS
    default_preset = "hrnet-base"

    def __init__(
        self,
        hidden_sizes: list[int] | tuple[int, ...] = (18, 36, 72, 144),
        num_blocks: int = 2,
        norm_type: str = "batch",
        **kwargs,
    ):
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        if not hidden_sizes or num_blocks < 1:
            raise ValueError(f"need at least one branch and one block, got {list(hidden_sizes)} and {num_blocks}")
        self.check_counts(1, hidden_sizes=list(hidden_sizes), num_blocks=num_blocks)
        self.hidden_sizes = list(hidden_sizes)
        self.num_blocks = num_blocks
        self.norm_type = norm_type
        super().__init__(**kwargs)

    @property
    def num_branches(self) -> int:
        return len(self.hidden_sizes)
