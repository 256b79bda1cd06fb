"""What every harmonization model of lemart_hf shares: the output, the losses, padding, background blending and the
`forward` of the `...ForHarmonization` classes (`HarmonizationModelMixin`).

Every architecture maps `pixel_values` (B, 4, H, W) = [composite RGB in [0, 1], mask in [0, 1]] to an RGB image
(B, 3, H, W) in [0, 1]. This file is the one home of the pieces around that mapping. Each model folder links to
it (a symbolic link of the same name) so that a saved model folder with remote code is self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput


@dataclass
class HarmonizationOutput(ModelOutput):
    """Output of a `...ForHarmonization` model.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): training loss, returned when `labels` are given.
        harmonized (`torch.FloatTensor` of shape `(B, 3, H, W)`): the harmonized image in [0, 1]; with
            `blend_background` its background equals the composite's exactly.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): per stage, token maps of shape `(B, C, h, w)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*): per block, attention probabilities.
    """

    loss: torch.FloatTensor | None = None
    harmonized: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def split_pixel_values(pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (B, 4, H, W) model input into composite (B, 3, H, W) and mask (B, 1, H, W), both in [0, 1]."""
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 4:
        raise ValueError(
            "pixel_values must have shape (batch, 4, height, width): composite RGB in [0, 1] plus the mask; "
            f"got {tuple(pixel_values.shape)}"
        )
    return pixel_values[:, :3], pixel_values[:, 3:4]


def check_unit_range(**tensors: torch.Tensor | None) -> None:
    """`ValueError` unless every given float tensor is finite with values in [0, 1] (a 1e-3 tolerance).

    Catches 8-bit data passed as float (0..255), integer tensors and NaN / inf before they become a silently wrong
    prediction or loss. One read-back from the device for all of them; skipped while `torch.compile` traces and for
    tensors without data (the meta device, where FLOPs are counted).
    """
    given = {name: tensor for name, tensor in tensors.items() if tensor is not None}
    for name, tensor in given.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a float tensor with values in [0, 1], got {tensor.dtype}")
    given = {name: tensor for name, tensor in given.items() if tensor.numel() and not tensor.is_meta}
    if not given or torch.compiler.is_compiling():
        return
    bounds = torch.stack([torch.stack(torch.aminmax(t.detach())).float() for t in given.values()]).tolist()
    for name, (low, high) in zip(given, bounds):
        if not (low >= -1e-3 and high <= 1 + 1e-3):  # NaN fails both
            hint = "; 8-bit data must be divided by 255" if 1 + 1e-3 < high <= 255 and low >= 0 else ""
            found = f"[{low:.4g}, {high:.4g}]"
            raise ValueError(f"{name} must be finite with values in [0, 1], got values in {found}{hint}")


def pad_to_multiple(pixel_values: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Replicate-pad the bottom/right of (B, C, H, W) so that H and W become multiples of the given numbers."""
    height, width = pixel_values.shape[-2:]
    pad_h = -height % multiple_h
    pad_w = -width % multiple_w
    if pad_h == 0 and pad_w == 0:
        return pixel_values
    return F.pad(pixel_values, (0, pad_w, 0, pad_h), mode="replicate")


def blend_background(prediction: torch.Tensor, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`mask * prediction + (1 - mask) * composite`, exact where the mask is 0.

    Uses `torch.where` for the hard background so that 0-mask pixels are copied bit-exactly (the arithmetic form
    can differ from the composite in the last bit).
    """
    blended = mask * prediction + (1 - mask) * composite
    return torch.where(mask == 0, composite, blended)


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels and channels; images (B, 3, H, W) in [0, 1]; returns a scalar."""
    return F.mse_loss(prediction.float(), target.float())


def foreground_normalized_mse_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, min_area: float = 100.0
) -> torch.Tensor:
    """Foreground-normalized MSE (iS2AM): per sample `sum(M (p - t)^2) / (C max(sum M, min_area))`, batch mean.

    Args:
        prediction, target: (B, C, H, W) in [0, 1].
        mask: (B, 1, H, W) in [0, 1], 1 = foreground.
        min_area: lower bound on the foreground area in pixels, so tiny objects do not blow the loss up.
    Returns:
        A scalar tensor (float32).
    """
    mask = mask.float()
    squared_error = (prediction.float() - target.float()).pow(2) * mask
    foreground_area = mask.sum(dim=(1, 2, 3)).clamp_min(min_area)
    per_sample = squared_error.sum(dim=(1, 2, 3)) / (prediction.shape[1] * foreground_area)
    return per_sample.mean()


def harmonization_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, loss_type: str, min_area: float
) -> torch.Tensor:
    """Dispatch to `mse_loss` (`"mse"`) or `foreground_normalized_mse_loss` (`"fn_mse"`)."""
    if loss_type == "mse":
        return mse_loss(prediction, target)
    if loss_type == "fn_mse":
        return foreground_normalized_mse_loss(prediction, target, mask, min_area)
    raise ValueError(f"loss_type must be 'mse' or 'fn_mse', got {loss_type!r}")


def finish_harmonization(
    raw_output: torch.Tensor,
    composite: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    residual_output: bool,
    blend: bool,
    loss_type: str,
    min_area: float,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Turn a network's raw (B, 3, H, W) output into the loss and the harmonized image in [0, 1].

    The loss is taken on the unclamped prediction (clamping would stop gradients at the range limits); the
    returned image is clamped to [0, 1]. With `blend`, both use the composite's background.
    """
    prediction = composite + raw_output if residual_output else raw_output
    prediction = prediction.to(composite.dtype)
    if blend:
        prediction = blend_background(prediction, composite, mask)
    loss = None
    if labels is not None:
        if labels.shape != composite.shape:
            raise ValueError(
                f"labels must have shape {tuple(composite.shape)} like the composite, got {tuple(labels.shape)}"
            )
        loss = harmonization_loss(prediction, labels, mask, loss_type, min_area)
    return loss, prediction.clamp(0, 1)


class HarmonizationModelMixin:
    """The `forward` of every `...ForHarmonization` model: split `pixel_values`, pad them to what the network needs,
    run it, crop back, add the correction to the composite, keep the composite's background, compute the loss.

    A model class lists it before its `PreTrainedModel` base and defines:

    - `padded_size(height, width) -> (H', W')`: the smallest size >= (height, width) the network accepts;
    - `predict_correction(padded, output_hidden_states, output_attentions) -> (raw, hidden_states, attentions)`:
      `padded` (B, 4, H', W') -> `raw` (B, 3, H', W') (a correction with `config.residual_output`, else the image),
      and tuples of intermediate maps / attention probabilities, or None.

    Its config needs `residual_output`, `blend_background`, `loss_type` and `fn_mse_min_area`
    (`configuration_harmonization.HarmonizationConfig`).
    """

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; a folder saved with its code (remote code) also maps `AutoModel`.

        transformers records only the saved class's own Auto class in `config.auto_map`. The backbone
        (`self.base_model`: `SwinIHModel` for SwinIH, the model itself for the others) lives in the same file, so
        the entry makes `AutoModel.from_pretrained(folder, trust_remote_code=True)` work where lemart_hf is absent.
        """
        backbone = type(self.base_model)
        if self._auto_class is not None and backbone.__module__ == type(self).__module__:
            module = backbone.__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.{backbone.__name__}",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def get_input_embeddings(self) -> None:
        """None: an image model has no token-embedding table. (transformers' default raises NotImplementedError for
        models it cannot inspect, and Accelerate's FSDP2 preparation asks every model for its input embeddings.)"""

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        loss_type: str | None = None,
        original_sizes: torch.Tensor | None = None,
    ) -> HarmonizationOutput | tuple:
        """
        Args:
            pixel_values: (B, 4, H, W) float, any H and W: composite RGB in [0, 1] and the mask in [0, 1] (1 =
                foreground).
            labels: (B, 3, H, W) float in [0, 1], the real image; gives `loss`.
            output_attentions: return attention probabilities (models with attention; others return None).
            output_hidden_states: return intermediate feature maps.
            loss_type: `"mse"` or `"fn_mse"`; defaults to `config.loss_type`.
            original_sizes: not used by the model; accepted so that `model(**processor(image, mask))` works (the
                processor returns the sizes for `post_process_harmonization`).
        Returns:
            `HarmonizationOutput` (or a tuple without the Nones when `return_dict=False`).
        Raises:
            ValueError: inputs or labels that are not float, not finite, or outside [0, 1] (`check_unit_range`).
        """
        config = self.config
        check_unit_range(pixel_values=pixel_values, labels=labels)
        pixel_values = pixel_values.to(self.dtype)  # e.g. float32 inputs to a bfloat16 model, as the pipeline does
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        composite, mask = split_pixel_values(pixel_values)
        height, width = pixel_values.shape[-2:]
        padded = pad_to_multiple(pixel_values, *self.padded_size(height, width))
        raw, hidden_states, attentions = self.predict_correction(padded, output_hidden_states, output_attentions)
        loss, harmonized = finish_harmonization(
            raw[..., :height, :width],
            composite,
            mask,
            labels,
            residual_output=config.residual_output,
            blend=config.blend_background,
            loss_type=loss_type or config.loss_type,
            min_area=config.fn_mse_min_area,
        )
        output = HarmonizationOutput(
            loss=loss, harmonized=harmonized, hidden_states=hidden_states, attentions=attentions
        )
        return output if return_dict else output.to_tuple()
