"""HRNet-IH: a High-Resolution Network for image harmonization (the HRNet of LEMaRT's Table 3).

(B, 4, H, W) -> a full-resolution stem -> stages that each add a branch at half the previous resolution; in each
stage every branch runs its residual blocks, then an exchange unit sums, for every branch, all branches resampled
to its resolution -> all branches upsampled to full resolution, concatenated and fused by 1x1 convolutions into
the RGB correction -> `HarmonizationModelMixin` adds it to the composite and keeps the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_hrnet import HRNetIHConfig
from .layers import ConvNormAct, HarmonizationPreTrainedModel, ResidualBlock
from .modeling_harmonization import HarmonizationModelMixin


class HRNetExchange(nn.Module):
    """Exchange unit: output branch j = ReLU(sum_i resample(x_i -> j)). Higher resolution -> lower: a chain of
    strided 3x3 conv-norm (ReLU between); lower -> higher: 1x1 conv-norm, then bilinear upsampling. With one more
    output than input branch, the extra (coarsest) output is the new branch of the next stage. Branch widths are
    kept, so the same-resolution path is the identity."""

    def __init__(self, widths_in: list[int], widths_out: list[int], norm_type: str):
        super().__init__()
        self.paths = nn.ModuleList()
        for j, width_out in enumerate(widths_out):
            row = nn.ModuleList()
            for i, width_in in enumerate(widths_in):
                if i == j:
                    row.append(nn.Identity())
                elif i > j:
                    row.append(ConvNormAct(width_in, width_out, 1, norm_type=norm_type, act=False))
                else:
                    steps = [ConvNormAct(width_in, width_in, 3, 2, norm_type) for _ in range(j - i - 1)]
                    steps.append(ConvNormAct(width_in, width_out, 3, 2, norm_type, act=False))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, branches: list[torch.Tensor], sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        outputs = []
        for j, row in enumerate(self.paths):
            total = 0
            for i, (path, x_i) in enumerate(zip(row, branches)):
                x = path(x_i)
                if i > j:
                    x = F.interpolate(x, size=sizes[j], mode="bilinear", align_corners=False)
                total = total + x
            outputs.append(F.relu(total))
        return outputs


class HRNetIHPreTrainedModel(HarmonizationPreTrainedModel):
    config: HRNetIHConfig
    config_class = HRNetIHConfig
    base_model_prefix = "hrnet"
    _no_split_modules = ["ResidualBlock"]


class HRNetIHForHarmonization(HarmonizationModelMixin, HRNetIHPreTrainedModel):
    """HRNet-IH: (B, 4, H, W) of any H, W -> harmonized (B, 3, H, W) in [0, 1]; sides are replicate-padded to a
    multiple of 2**(branches - 1) and the output cropped back."""

    def __init__(self, config: HRNetIHConfig):
        super().__init__(config)
        widths, norm = config.hidden_sizes, config.norm_type
        self.stem = nn.Sequential(
            ConvNormAct(config.num_channels, widths[0], 3, norm_type=norm),
            ConvNormAct(widths[0], widths[0], 3, norm_type=norm),
        )
        self.stages = nn.ModuleList()
        self.exchanges = nn.ModuleList()
        for stage in range(config.num_branches):
            active = widths[: stage + 1]
            self.stages.append(
                nn.ModuleList(
                    nn.Sequential(*(ResidualBlock(w, norm, relu_after_sum=True) for _ in range(config.num_blocks)))
                    for w in active
                )
            )
            # After the last stage the branches are fused by the head; before it, the exchange also creates the
            # next stage's new, coarser branch (from the coarsest existing one).
            if stage + 1 < config.num_branches:
                self.exchanges.append(HRNetExchange(active, widths[: stage + 2], norm))
        self.fuse = ConvNormAct(sum(widths), widths[0], 1, norm_type=norm)
        self.head = nn.Conv2d(widths[0], config.num_output_channels, 1)
        self.post_init()

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Multiples of the total downsampling; at least 2 pixels a side on the coarsest branch (for its norms)."""
        step = 2 ** (self.config.num_branches - 1)
        return max(2 * step, -(-height // step) * step), max(2 * step, -(-width // step) * step)

    def predict_correction(self, padded: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        """(B, 4, H', W') -> raw (B, 3, H', W'); hidden states: every branch after the last stage, coarsest last."""
        height, width = padded.shape[-2:]
        sizes = [(height >> b, width >> b) for b in range(self.config.num_branches)]
        branches = [self.stem(padded)]
        for stage, blocks in enumerate(self.stages):
            branches = [block(x) for block, x in zip(blocks, branches)]
            if stage < len(self.exchanges):
                branches = self.exchanges[stage](branches, sizes)
        upsampled = [branches[0]] + [
            F.interpolate(x, size=sizes[0], mode="bilinear", align_corners=False) for x in branches[1:]
        ]
        raw = self.head(self.fuse(torch.cat(upsampled, dim=1)))
        return raw, tuple(branches) if output_hidden_states else None, None


__all__ = ["HRNetIHPreTrainedModel", "HRNetIHForHarmonization"]
