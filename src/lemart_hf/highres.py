"""High-resolution harmonization: run the model at its working size, transfer its correction to full resolution.

A harmonization model is trained at one size (256 or 512). For a larger photo, running the network at full size
is slow (global attention is quadratic in the pixels) and off its training distribution; resizing its output back
up (`method="resize"`) blurs the foreground, losing every detail above the working resolution. Instead the
correction is transferred, in the spirit of guided-filter / bilateral-grid upsampling:

1. At the working size, fit a *local colour transform* that maps the composite to the model's prediction inside the
   mask: per pixel, an affine map `out = A @ rgb + b` (3x3 matrix + offset) fitted by weighted least squares over a
   `(2r+1)^2` window of foreground pixels (`method="affine"`), or only an offset (`method="offset"`: a low-frequency
   additive correction). Windows with little foreground lean on one transform fitted to the whole foreground.
2. Average the coefficients over neighbouring windows (the guided filter's second box filter), so they vary
   smoothly, and upsample the *coefficients* (not the image) bilinearly to full resolution.
3. Apply them to the full-resolution composite, then blend with the full-resolution mask. Pixels where the mask is
   0 are copied from the composite bit-exactly.

Because the full-resolution pixels go through a smooth colour map, their detail (texture, edges, noise) is kept;
only the colour change comes from the low-resolution prediction. On benchmarks/bench_highres.py (real photos
recoloured inside real object masks, a perfect prediction at 256 px) the fPSNR at 4096 px was 46.6 dB for
`"affine"` with 5x5 windows, 37.9 dB for `"offset"`, 33.3 dB for `"resize"` and 19.4 dB for the composite left
unchanged. The default windows are wider (`default_radius`): a real model's errors are blotchy, not pixel noise.

Memory and time stay bounded at full size: the coefficients are upsampled and applied a strip of rows at a time
(`max_strip_elements`), only over each strip's foreground columns (`harmonized_regions`), and the full-size
composite and mask may be uint8 (an 8-bit photo as decoded), converted to float a strip at a time. So an 8000x8000
photo needs no full-size float array, only its output (benchmarks/bench_fullres.py).

This file imports nothing from lemart_hf (only torch), so a pipeline saved with remote code can carry a copy of it.
Tensors are channels first, one image at a time (sizes differ between images), float in [0, 1]; full-size images
may also be uint8, value v meaning v / 255 (which gives the same results as the float image v / 255, bit for bit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSFER_METHODS = ("affine", "offset", "resize")

# A mask below this counts as background when the blended prediction is "unblended" (see `_fit_targets`).
_MIN_MASK = 1e-3


def default_radius(working_size: tuple[int, int]) -> int:
    """Window radius in working-size pixels: 1/8 of the shorter side (16 at 128, 32 at 256), at least 1.

    Smaller windows follow a spatially varying colour change more closely; larger ones average out more of the
    model's own errors. With a perfect prediction (benchmarks/bench_highres.py, 1024 px, `--max_photos 4`) radius 32
    at 256 px keeps 39.0 / 43.8 dB fPSNR (skimage / HOutdoor photos) against 44.3 / 50.0 dB for radius 2, both far
    above what any model reaches (about 20 dB). A real model's errors are blotchy (e.g. faint blocks across a pasted
    sky, the size of its attention windows), and a window that small copies them into the photo: on the validation
    split held out of HOutdoor + HDiverse train (176 pairs; the released swinih-lemart-general at 128 px, scored at
    256 px) fPSNR rose with the radius, 20.30 / 20.36 / 20.43 / 20.48 / 20.54 / 20.59 dB at radius 1 (the former
    default, 1/128) / 2 / 4 / 8 / 16 / 64, and the blocks in skies went away from 16 on. 1/8 takes most of the gain
    and keeps the transform local."""
    return max(1, round(min(working_size) / 8))


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with zero padding, (C, h, w) -> (C, h, w), by running sums (cost independent of
    r). Ratios of two such means are properly normalised near the borders. The running sums are float64 where the
    device has it: in float32 their rounding, divided by a small foreground coverage, would show."""
    size = 2 * radius + 1
    dtype = x.dtype
    x = F.pad(x, (radius + 1, radius, radius + 1, radius))
    if x.device.type != "mps":
        x = x.double()
    x = x.cumsum(dim=-1)
    x = x[..., size:] - x[..., :-size]
    x = x.cumsum(dim=-2)
    x = x[..., size:, :] - x[..., :-size, :]
    return (x / (size * size)).to(dtype)


def _fit_targets(
    composite: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor, prediction_is_blended: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel regression target and weight at the working size.

    A blended prediction is `m * p + (1 - m) * c`: on a soft edge it is only partly corrected. Fitting
    `m * (T(c) - c) ~ prediction - c` is the honest least-squares problem there; it equals fitting `T(c) ~ p` with
    `p = c + (prediction - c) / m` and weight `m^2`. Without blending the prediction is `p` itself, weighted by `m`.
    """
    if prediction_is_blended:
        inside = mask > _MIN_MASK
        target = torch.where(inside, composite + (prediction - composite) / mask.clamp_min(_MIN_MASK), composite)
        # A barely-covered pixel amplifies the model's rounding noise by 1/m; no colour lies far outside [0, 1].
        target = target.clamp(-0.25, 1.25)
        return target, torch.where(inside, mask * mask, torch.zeros_like(mask))
    return prediction, mask


def _solve_affine(cov_pi: torch.Tensor, cov_ii: torch.Tensor, prior: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    """Ridge solution `A = (cov_pi + ridge * prior) (cov_ii + ridge * I)^-1` for (..., 3, 3) batches."""
    eye = torch.eye(3, dtype=cov_ii.dtype, device=cov_ii.device)
    ridge = ridge[..., None, None]
    lhs = cov_ii + ridge * eye
    rhs = cov_pi + ridge * prior
    # A lhs = rhs  <=>  lhs^T A^T = rhs^T (lhs is symmetric).
    return torch.linalg.solve(lhs, rhs.transpose(-1, -2)).transpose(-1, -2)


def fit_color_transform(
    composite: torch.Tensor,
    prediction: torch.Tensor,
    mask: torch.Tensor,
    *,
    method: str = "affine",
    radius: int | None = None,
    eps: float = 1e-4,
    prediction_is_blended: bool = True,
) -> torch.Tensor:
    """Fit a smooth per-pixel colour transform composite -> prediction inside the mask, at the working size.

    Args:
        composite: (3, h, w) in [0, 1], the composite as the model saw it.
        prediction: (3, h, w) in [0, 1], the model's output.
        mask: (1, h, w) in [0, 1], the mask as the model saw it.
        method: `"affine"` (3x3 matrix + offset per pixel) or `"offset"` (offset only, matrix = identity).
        radius: window radius in pixels; defaults to `default_radius((h, w))`.
        eps: ridge strength, in colour-variance units: pulls each window's matrix towards the matrix fitted to the
            whole foreground (which is itself pulled towards the identity), more so where a window holds little
            foreground or little colour variation.
        prediction_is_blended: whether `prediction` is already `m * p + (1 - m) * composite` (the models'
            `blend_background`), see `_fit_targets`.
    Returns:
        Coefficients (12, h, w), float32: rows of `A` (9, row-major) then `b` (3); apply with
        `apply_color_transform`. With an empty mask: the identity transform.
    """
    if method not in ("affine", "offset"):
        raise ValueError(f"method must be 'affine' or 'offset', got {method!r}")
    composite, prediction, mask = composite.float(), prediction.float(), mask.float()
    height, width = composite.shape[-2:]
    radius = default_radius((height, width)) if radius is None else radius
    target, weight = _fit_targets(composite, prediction, mask, prediction_is_blended)
    identity = torch.eye(3, device=composite.device).reshape(9, 1, 1)
    total = weight.sum()
    if total <= 0:
        return torch.cat([identity.expand(9, height, width), composite.new_zeros(3, height, width)])

    # Centre the colours on the foreground means so that E[xy] - E[x]E[y] does not cancel in float32.
    mean_c = (weight * composite).sum(dim=(1, 2), keepdim=True) / total
    mean_t = (weight * target).sum(dim=(1, 2), keepdim=True) / total
    guide, target = composite - mean_c, target - mean_t

    # One transform for the whole foreground: the fallback where windows hold no foreground, and their prior.
    if method == "affine":
        global_cov_ii = torch.einsum("khw,lhw->kl", weight * guide, guide) / total
        global_cov_pi = torch.einsum("khw,lhw->kl", weight * target, guide) / total
        global_a = _solve_affine(global_cov_pi, global_cov_ii, torch.eye(3, device=guide.device), guide.new_tensor(eps))
    else:
        global_a = torch.eye(3, device=guide.device)
    # With centred colours and the global matrix, the global offset is 0 (both weighted means are 0).

    # Windowed weighted moments, all box filters in one call.
    pairs = [(k, l) for k in range(3) for l in range(k, 3)]
    channels = [weight, weight * guide, weight * target]
    if method == "affine":
        channels += [weight * guide[k : k + 1] * guide[l : l + 1] for k, l in pairs]
        channels += [weight * target[c : c + 1] * guide[k : k + 1] for c in range(3) for k in range(3)]
    moments = _box(torch.cat(channels), radius)
    coverage = moments[0:1]  # mean weight in the window, in [0, 1]
    safe = coverage.clamp_min(1e-8)
    mean_i = moments[1:4] / safe
    mean_p = moments[4:7] / safe
    if method == "affine":
        cov_ii = torch.empty(3, 3, height, width, device=guide.device)
        for index, (k, l) in enumerate(pairs):
            cov_ii[k, l] = cov_ii[l, k] = moments[7 + index] / safe[0] - mean_i[k] * mean_i[l]
        cov_pi = (moments[13:22] / safe).reshape(3, 3, height, width) - mean_p[:, None] * mean_i[None]
        # Ridge grows as the window's foreground shrinks: few samples -> stay near the global matrix.
        ridge = eps / safe[0]
        local_a = _solve_affine(cov_pi.permute(2, 3, 0, 1), cov_ii.permute(2, 3, 0, 1), global_a, ridge).permute(
            2, 3, 0, 1
        )  # (3, 3, h, w)
    else:
        local_a = global_a[:, :, None, None].expand(3, 3, height, width)
    local_b = mean_p - torch.einsum("klhw,lhw->khw", local_a, mean_i)
    local = torch.cat([local_a.reshape(9, height, width), local_b])  # centred coordinates

    # Second pass: average the coefficients of all windows covering a pixel, weighted by their foreground, so the
    # transform varies smoothly; where no window saw foreground, use the global transform.
    global_coefficients = torch.cat([global_a.reshape(9, 1, 1), guide.new_zeros(3, 1, 1)])
    smoothed = _box(torch.cat([coverage, coverage * (local - global_coefficients)]), radius)
    support = smoothed[0:1]
    blend = support / (support + 1e-4)
    centred = global_coefficients + blend * smoothed[1:] / support.clamp_min(1e-12)
    # A singular window cannot give NaN here (the ridge keeps every system positive definite), but the background
    # exactness of `apply_color_transform` relies on finite coefficients, so make sure of it.
    centred = torch.nan_to_num(centred, nan=0.0, posinf=0.0, neginf=0.0)

    # Undo the centring: out = A (x - mean_c) + b + mean_t = A x + (b + mean_t - A mean_c).
    a = centred[:9]
    b = (
        centred[9:]
        + mean_t.reshape(3, 1, 1)
        - torch.einsum("cklw,k->clw", a.reshape(3, 3, height, width), mean_c.flatten())
    )
    return torch.cat([a, b])


def _resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (C, h, w), antialiased along the axes that shrink (as PIL's BILINEAR); no-op if same size."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    shrinks = size[0] < tensor.shape[-2] or size[1] < tensor.shape[-1]
    return F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False, antialias=shrinks)[0]


# ----- full-size images, a strip of rows at a time --------------------------------------------------------------
# A full-size composite or mask is float in [0, 1] or uint8 (value v meaning v / 255, as the image processor
# converts 8-bit data), of any strides (e.g. a (3, H, W) view of an (H, W, 3) array). Only strips of rows are ever
# converted to float, so an 8-bit photo never gets a full-size float copy.


def _float(pixels: torch.Tensor) -> torch.Tensor:
    """A strip as float32 in [0, 1]: uint8 v -> v / 255 (bit for bit the image processor's conversion)."""
    if pixels.dtype == torch.uint8:  # (planar uint8 first: converting and transposing at once is 2x slower)
        return pixels.contiguous().float().div_(255.0)
    return pixels.float()


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """A float strip as uint8: round(255 x) after clamping to [0, 1] (bit for bit the pipeline's PIL conversion)."""
    return pixels.clamp(0, 1).mul_(255).round_().to(torch.uint8)


def _rows_per_strip(channels: int, width: int, max_strip_elements: int) -> int:
    return max(1, max_strip_elements // (channels * width))


def _copy_converted(destination: torch.Tensor, source: torch.Tensor, max_strip_elements: int) -> None:
    """destination[:] = source for (C, H, W) tensors of any dtypes among uint8 / float, converting strip by strip."""
    if destination.dtype == source.dtype or (destination.is_floating_point() and source.is_floating_point()):
        destination.copy_(source)
        return
    convert = to_uint8 if destination.dtype == torch.uint8 else _float
    rows = _rows_per_strip(source.shape[0], source.shape[-1], max_strip_elements)
    for top in range(0, source.shape[-2], rows):
        destination[:, top : top + rows].copy_(convert(source[:, top : top + rows]))


def to_working_size(
    image: torch.Tensor, size: tuple[int, int], *, antialias: bool = True, max_strip_elements: int = 1 << 20
) -> torch.Tensor:
    """(C, H, W) float in [0, 1] or uint8 -> float32 (C, h, w) in [0, 1], bilinear (antialiased by default, as the
    image processor resizes).

    Equals `F.interpolate(x[None], size, mode="bilinear", antialias=antialias)[0]` with `x` the image as float
    (`v / 255` for uint8) bit for bit. PyTorch's antialiased resize is separable, columns first, then rows, so an
    8-bit image is converted and resized along its columns a strip of rows at a time, then along its rows: the
    largest float array is (C, H, w), not (C, H, W).
    """
    size = (int(size[0]), int(size[1]))
    height, width = image.shape[-2:]
    if (height, width) == size:
        return _float(image)
    if image.dtype != torch.uint8 or not antialias:  # (without antialiasing PyTorch resizes both axes in one pass)
        resized = F.interpolate(
            _float(image)[None], size=size, mode="bilinear", align_corners=False, antialias=antialias
        )
        return resized[0]
    channels = image.shape[0]
    rows = min(height, _rows_per_strip(channels, width, max_strip_elements))
    # One float buffer for the strips and one array for the result, allocated once: a new float strip each time,
    # freed around the small results kept, left the allocator holding hundreds of MB of freed strips.
    buffer = torch.empty(channels, rows, width, device=image.device)
    columns = torch.empty(channels, height, size[1], device=image.device)
    for top in range(0, height, rows):
        strip = buffer[:, : min(rows, height - top)]
        strip.copy_(image[:, top : top + rows].contiguous()).div_(255.0)  # as `_float`
        if width != size[1]:
            strip = F.interpolate(
                strip[None], size=(strip.shape[-2], size[1]), mode="bilinear", align_corners=False, antialias=True
            )[0]
        columns[:, top : top + strip.shape[-2]] = strip
    del buffer
    if height == size[0]:
        return columns
    return F.interpolate(columns[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


class _UpsampledRows:
    """A small map (C, h, w) bilinearly resized to (C, H, W), produced a strip of rows at a time.

    Columns first, antialiased when they shrink; then the rows: when they shrink (H <= h) the whole, small map is
    resized at once; when they grow, output rows between the same two source rows j, j+1 (align_corners=False, as
    F.interpolate) are `c[j] + f * (c[j+1] - c[j])`, with only rows j and j+1 resized along the columns. So the
    largest array is one strip, not (C, h, W).
    """

    def __init__(self, low: torch.Tensor, size: tuple[int, int]):
        self.low, self.height, self.width = low, int(size[0]), int(size[1])
        low_height = low.shape[-2]
        self.whole = None
        self._pair = (-1, None, None)
        if self.height <= low_height:
            self.whole = _resize(_resize(low, (low_height, self.width)), (self.height, self.width))
            self.runs = [(0, self.height, -1)]
            return
        position = (torch.arange(self.height, dtype=torch.float64) + 0.5) * (low_height / self.height) - 0.5
        position = position.clamp(0, low_height - 1)
        source = position.floor().long().clamp_max(low_height - 1)
        self.frac = (position - source).float().to(low.device)
        bounds = torch.searchsorted(source, torch.arange(low_height + 1)).tolist()
        self.runs = [(bounds[j], bounds[j + 1], j) for j in range(low_height) if bounds[j] < bounds[j + 1]]

    def strips(self, max_rows: int):
        """(top, bottom, source row) for strips of at most `max_rows` rows, each between the same two source rows."""
        for top, bottom, source in self.runs:
            for start in range(top, bottom, max_rows):
                yield start, min(start + max_rows, bottom), source

    def rows(self, top: int, bottom: int, source: int, left: int, right: int) -> torch.Tensor:
        """The resized map's rows top:bottom, columns left:right: (C, bottom - top, right - left)."""
        if self.whole is not None:
            return self.whole[:, top:bottom, left:right]
        if self._pair[0] != source:
            pair = self.low[:, source : source + 2]
            pair = _resize(pair, (pair.shape[-2], self.width))
            delta = pair[:, 1:] - pair[:, :1] if pair.shape[-2] == 2 else torch.zeros_like(pair)
            self._pair = (source, pair[:, :1], delta)
        _, base, delta = self._pair
        return torch.addcmul(base[..., left:right], self.frac[top:bottom, None], delta[..., left:right])


def _foreground_columns(alpha: torch.Tensor) -> tuple[int, int] | None:
    """[left, right) of the columns of a (1, r, W) mask strip holding a value > 0; None when there is none."""
    columns = alpha.amax(dim=(0, 1)) > 0
    index = columns.nonzero()
    if len(index) == 0:
        return None
    return int(index[0]), int(index[-1]) + 1


def _transform_rows(coef: torch.Tensor, pixels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """clamp(x + m * (A x + b - x)) for x = pixels, m = alpha.

    `coef` is (12, r, c), `pixels` (3, r, c), `alpha` (1, r, c). Where `m == 0` this is `x + 0 = x` exactly in IEEE
    arithmetic (the coefficients are finite), so the background is copied bit-exactly without a separate select.
    In-place multiply-adds keep this to a few passes over the strip.
    """
    out = torch.addcmul(coef[9:], coef[0:9:3], pixels[0:1])  # b + column 0 of A (a[0, 0], a[1, 0], a[2, 0]) x0
    for k in (1, 2):
        out.addcmul_(coef[k:9:3], pixels[k : k + 1])
    return out.sub_(pixels).mul_(alpha).add_(pixels).clamp_(0, 1)


def _blend_prediction(prediction: torch.Tensor, pixels: torch.Tensor, alpha: torch.Tensor, as_is: bool) -> torch.Tensor:
    """The prediction itself (`as_is`: already blended, at full size) or blended with the mask; background exact."""
    blended = prediction if as_is else alpha * prediction + (1 - alpha) * pixels
    return torch.where(alpha == 0, pixels, blended.clamp(0, 1))


def _regions(rows: _UpsampledRows, composite: torch.Tensor, mask: torch.Tensor, step, max_strip_elements: int):
    """For each strip of rows that holds foreground, its foreground columns' (top, left, step(map, pixels, alpha))."""
    max_rows = _rows_per_strip(rows.low.shape[0], composite.shape[-1], max_strip_elements)
    for top, bottom, source in rows.strips(max_rows):
        columns = _foreground_columns(mask[:, top:bottom])
        if columns is None:
            continue
        left, right = columns
        pixels = _float(composite[:, top:bottom, left:right])
        alpha = _float(mask[:, top:bottom, left:right])
        yield top, left, step(rows.rows(top, bottom, source, left, right), pixels, alpha)


def _check_full_size(composite: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None) -> None:
    if composite.ndim != 3 or composite.shape[0] != 3 or tuple(mask.shape) != (1, *composite.shape[-2:]):
        raise ValueError(
            f"composite must be (3, H, W) and mask (1, H, W) of the same size, got {tuple(composite.shape)} and "
            f"{tuple(mask.shape)}"
        )
    for name, tensor in (("composite", composite), ("mask", mask)) + ((("out", out),) if out is not None else ()):
        if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
            raise ValueError(f"{name} must be float in [0, 1] or uint8, got {tensor.dtype}")
    if out is not None and tuple(out.shape) != tuple(composite.shape):
        raise ValueError(f"out must be {tuple(composite.shape)} like the composite, got {tuple(out.shape)}")


def _output(composite: torch.Tensor, out: torch.Tensor | None, max_strip_elements: int) -> torch.Tensor:
    """`out` (or a new float32 tensor) holding the composite, to be overwritten where the mask is > 0."""
    if out is None:
        out = torch.empty(composite.shape, dtype=torch.float32, device=composite.device)
    _copy_converted(out, composite, max_strip_elements)
    return out


def _write(output: torch.Tensor, regions) -> torch.Tensor:
    for top, left, values in regions:
        target = output[:, top : top + values.shape[-2], left : left + values.shape[-1]]
        target.copy_(to_uint8(values) if target.dtype == torch.uint8 else values)
    return output


def apply_color_transform(
    coefficients: torch.Tensor,
    composite: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_strip_elements: int = 1 << 21,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Upsample coefficients (12, h, w) bilinearly to the composite's size and apply them inside the mask.

    Args:
        coefficients: from `fit_color_transform`.
        composite: (3, H, W) in [0, 1], full resolution; or uint8 (v / 255), which is converted a strip at a time.
        mask: (1, H, W) in [0, 1] or uint8, full resolution.
        max_strip_elements: bound on the upsampled coefficients held at once (12 x rows x W floats).
        out: where to write the result, (3, H, W) float or uint8 (rounded), any strides (e.g. a view of an
            (H, W, 3) array); by default a new float32 tensor.
    Returns:
        `out`: `m * (A x + b) + (1 - m) * x`, equal to `composite` wherever `mask == 0`.
    """
    _check_full_size(composite, mask, out)
    coefficients = coefficients.to(composite.device, torch.float32)
    rows = _UpsampledRows(coefficients, tuple(composite.shape[-2:]))
    output = _output(composite, out, max_strip_elements)
    return _write(output, _regions(rows, composite, mask, _transform_rows, max_strip_elements))


def harmonized_regions(
    composite: torch.Tensor,
    mask: torch.Tensor,
    prediction: torch.Tensor,
    composite_low: torch.Tensor | None = None,
    mask_low: torch.Tensor | None = None,
    *,
    method: str = "affine",
    radius: int | None = None,
    eps: float = 1e-4,
    prediction_is_blended: bool = True,
    max_strip_elements: int = 1 << 21,
):
    """`transfer_harmonization`'s result where it can differ from the composite, a piece at a time.

    Yields `(top, left, values)`: `values` (3, r, c) float32 in [0, 1] is the result's rows `top:top + r`, columns
    `left:left + c`. The pieces do not overlap and cover every pixel where `mask > 0` (a strip of rows, cut to its
    foreground columns); everywhere else the result is the composite itself. Memory stays at one strip
    (`max_strip_elements`) beyond the inputs, whatever their size. Arguments as `transfer_harmonization`; they are
    checked and the colour transform is fitted on the call, the pieces are computed as they are taken.
    """
    if method not in TRANSFER_METHODS:
        raise ValueError(f"method must be one of {TRANSFER_METHODS}, got {method!r}")
    _check_full_size(composite, mask, None)
    prediction = prediction.to(composite.device, torch.float32)
    if mask.numel() == 0 or not bool(mask.amax() > 0):
        return iter(())
    size, low_size = tuple(composite.shape[-2:]), tuple(prediction.shape[-2:])
    if low_size == size or method == "resize":
        as_is = prediction_is_blended and low_size == size

        def step(upsampled, pixels, alpha):
            return _blend_prediction(upsampled, pixels, alpha, as_is)

        return _regions(_UpsampledRows(prediction, size), composite, mask, step, max_strip_elements)
    antialias = low_size[0] < size[0] or low_size[1] < size[1]
    if composite_low is None:
        composite_low = to_working_size(composite, low_size, antialias=antialias)
    if mask_low is None:
        mask_low = to_working_size(mask, low_size, antialias=antialias)
    coefficients = fit_color_transform(
        composite_low.to(composite.device),
        prediction,
        mask_low.to(composite.device),
        method=method,
        radius=radius,
        eps=eps,
        prediction_is_blended=prediction_is_blended,
    )
    return _regions(_UpsampledRows(coefficients, size), composite, mask, _transform_rows, max_strip_elements)


def transfer_harmonization(
    composite: torch.Tensor,
    mask: torch.Tensor,
    prediction: torch.Tensor,
    composite_low: torch.Tensor | None = None,
    mask_low: torch.Tensor | None = None,
    *,
    method: str = "affine",
    radius: int | None = None,
    eps: float = 1e-4,
    prediction_is_blended: bool = True,
    max_strip_elements: int = 1 << 21,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Harmonize a full-resolution composite from a prediction made at the working size.

    Args:
        composite: (3, H, W) in [0, 1], full resolution; or uint8 (value v meaning v / 255, e.g. a (3, H, W) view
            of an (H, W, 3) photo), converted to float a strip of rows at a time: no full-size float copy is made.
        mask: (1, H, W) in [0, 1] or uint8, full resolution, 1 (255) = foreground (soft allowed).
        prediction: (3, h, w) in [0, 1], the model's output at the working size.
        composite_low, mask_low: (3, h, w) / (1, h, w), the input the model saw; by default `composite` and `mask`
            resized to (h, w) with antialiased bilinear interpolation (what the image processor does).
        method: `"affine"` (local affine colour transform, the default), `"offset"` (low-frequency additive
            correction) or `"resize"` (naive: upsample the prediction itself; blurs the foreground).
        radius, eps: see `fit_color_transform`.
        prediction_is_blended: whether the prediction already keeps the composite's background (`blend_background`).
        max_strip_elements: bound on the elements of one strip's upsampled coefficients (12 x rows x W).
        out: where to write the result: (3, H, W), float or uint8 (rounded, `round(255 x)`), any strides; by
            default a new float32 tensor. Pixels where `mask == 0` are copied from the composite (converted).
    Returns:
        `out`, (3, H, W) in [0, 1] (float32 by default). Where `mask == 0` it equals `composite` (as float32, or
        as uint8 for a uint8 composite and `out`) bit-exactly; an all-zero mask returns the composite unchanged.
        When (H, W) == (h, w) the prediction is used as it is. A uint8 composite gives the same values as the
        float composite `composite / 255`.
    """
    _check_full_size(composite, mask, out)
    regions = harmonized_regions(
        composite,
        mask,
        prediction,
        composite_low,
        mask_low,
        method=method,
        radius=radius,
        eps=eps,
        prediction_is_blended=prediction_is_blended,
        max_strip_elements=max_strip_elements,
    )
    return _write(_output(composite, out, max_strip_elements), regions)


__all__ = [
    "TRANSFER_METHODS",
    "apply_color_transform",
    "default_radius",
    "fit_color_transform",
    "harmonized_regions",
    "to_uint8",
    "to_working_size",
    "transfer_harmonization",
]
