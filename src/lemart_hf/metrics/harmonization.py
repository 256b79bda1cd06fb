"""`evaluate` module for image harmonization: MSE, PSNR, fMSE and fPSNR under a named protocol.

Load it offline by path (it ships inside the package)::

    import evaluate
    from lemart_hf.metrics import HARMONIZATION_METRIC

    metric = evaluate.load(HARMONIZATION_METRIC)
    for preds, reals, masks in batches:
        metric.add_batch(predictions=preds, references=reals, masks=masks)
    metric.compute()  # {"mse": ..., "psnr": ..., "fmse": ..., "fpsnr": ..., "images": ..., "empty_foreground": ...}

The computation is the package's own (`lemart_hf.metrics.score_harmonization`), so numbers agree with
`lemart_hf.evaluation.evaluate_harmonization` and `examples/run_eval.py` to the last digit.
"""

import io

import datasets
import evaluate
import numpy as np
import PIL.Image
import torch

from lemart_hf.metrics.functional import METRIC_NAMES, aggregate, score_harmonization
from lemart_hf.metrics.protocol import PROTOCOLS

_DESCRIPTION = """
Image harmonization metrics, per image then averaged over images: MSE (over H x W x 3), PSNR
(10 log10(peak^2 / MSE)), fMSE (sum(M d^2) / (3 sum M), the error on the foreground only) and fPSNR, on the
0..255 scale. Under the `default` protocol every image is first resized to 256x256 with antialiased bilinear
interpolation (PIL BILINEAR) and the mask thresholded at 0.5, the peak is 255; `is2am` is the iS2AM code's
variant (bilinear without antialiasing, soft mask, peak = the real image's maximum).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: harmonized images, each (3, H, W) channels first (torch tensor, numpy array, or a PIL image),
        values in [0, input_range] (default [0, 1]; PIL images are read as 0..255 and rescaled).
    references: the real images, same layout and range as predictions.
    masks: foreground masks, each (1, H, W) or (H, W), in [0, 1] (PIL: 0..255), 1 = foreground.
    protocol: "default" or "is2am".
    input_range: the maximum value of predictions and references (1.0 or 255.0); default 1.0.
    per_image: also return the per-image values as lists; default False.
Returns:
    mse, psnr, fmse, fpsnr: means over images (fMSE / fPSNR over the images whose foreground is not empty),
    images: how many images, empty_foreground: how many had an empty foreground after the protocol,
    non_finite: how many predictions held NaN (any makes the means NaN),
    protocol: the protocol's name; with per_image=True also per_image: {"mse": [...], ...}.
Examples:
    >>> metric = evaluate.load(HARMONIZATION_METRIC)
    >>> metric.compute(predictions=[np.ones((3, 4, 4))], references=[np.ones((3, 4, 4))], masks=[np.ones((4, 4))])
"""

_CITATION = """
@inproceedings{liu2023lemart,
  title={LEMaRT: Label-Efficient Masked Region Transform for Image Harmonization},
  author={Liu, Sheng and Huynh, Cong Phuoc and Chen, Cong and Arap, Maxim and Hamid, Raffay},
  booktitle={CVPR},
  year={2023}
}
@inproceedings{cong2020dovenet,
  title={DoveNet: Deep Image Harmonization via Domain Verification},
  author={Cong, Wenyan and Zhang, Jianfu and Niu, Li and Liu, Liu and Ling, Zhixin and Li, Weiyuan and Zhang, Liqing},
  booktitle={CVPR},
  year={2020}
}
"""

# Images are stored as .npy bytes: one Arrow binary per image keeps any (C, H, W) shape and is ~100x faster to
# write and read back than nested float lists.
_IMAGE = datasets.Value("binary")


def _encode(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _decode(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))


def _as_array(x, *, is_mask: bool) -> bytes:
    """One image or mask as a float32 channels-first array, encoded; PIL images are divided by 255."""
    if isinstance(x, bytes):  # already encoded
        return x
    if isinstance(x, PIL.Image.Image):
        arr = np.asarray(x.convert("L" if is_mask else "RGB"), dtype=np.float32) / 255.0
        return _encode(arr[None] if is_mask else arr.transpose(2, 0, 1))
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(x, dtype=np.float32)
    if is_mask and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"expected a {'(1, H, W) or (H, W) mask' if is_mask else '(3, H, W) image'}, got shape {arr.shape}"
        )
    return _encode(arr)


def _as_list(batch, *, is_mask: bool):
    if batch is None:
        return None
    if isinstance(batch, torch.Tensor) or isinstance(batch, np.ndarray):
        expected = 3 if is_mask and batch.ndim == 3 else 4
        if batch.ndim == expected:  # a batch tensor: split along the first axis
            return [_as_array(item, is_mask=is_mask) for item in batch]
    return [_as_array(item, is_mask=is_mask) for item in batch]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Harmonization(evaluate.Metric):
    """MSE / PSNR / fMSE / fPSNR of harmonized images against the real ones, under a named protocol."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _IMAGE, "references": _IMAGE, "masks": _IMAGE}),
            reference_urls=["https://github.com/bcmi/Image-Harmonization-Dataset-iHarmony4"],
        )

    def add_batch(self, *, predictions=None, references=None, masks=None, **kwargs):
        """Adds a batch: tensors (B, 3, H, W) / (B, 1, H, W), or lists of per-image arrays, tensors or PIL images."""
        return super().add_batch(
            predictions=_as_list(predictions, is_mask=False),
            references=_as_list(references, is_mask=False),
            masks=_as_list(masks, is_mask=True),
            **kwargs,
        )

    def add(self, *, prediction=None, reference=None, masks=None, mask=None, **kwargs):
        """Adds one image: (3, H, W) arrays or tensors (or PIL images), and its (1, H, W) / (H, W) mask, given
        as ``masks=`` (evaluate's naming: the feature's name) or ``mask=``."""
        masks = mask if masks is None else masks
        return super().add(
            prediction=None if prediction is None else _as_array(prediction, is_mask=False),
            reference=None if reference is None else _as_array(reference, is_mask=False),
            masks=None if masks is None else _as_array(masks, is_mask=True),
            **kwargs,
        )

    def _compute(self, predictions, references, masks, protocol="default", input_range=1.0, per_image=False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
        values = {k: [] for k in METRIC_NAMES}
        for pred, ref, mask in zip(predictions, references, masks):
            scores = score_harmonization(
                _decode(pred)[None],
                _decode(ref)[None],
                _decode(mask)[None],
                protocol=protocol,
                value_range=float(input_range),
            )
            for k in METRIC_NAMES:
                values[k].append(float(scores[k][0]))
        result = aggregate({k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()})
        result["protocol"] = protocol
        if per_image:
            result["per_image"] = values
        return result
