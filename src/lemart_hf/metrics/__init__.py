"""Harmonization metrics (MSE, PSNR, fMSE, fPSNR) and the evaluation protocol they are computed under.

Functions take RGB batches (B, 3, H, W) in [0, 1] and masks (B, 1, H, W) and return one value per image.
`HARMONIZATION_METRIC` is the path of the `evaluate` module shipped with the package::

    import evaluate
    from lemart_hf.metrics import HARMONIZATION_METRIC

    metric = evaluate.load(HARMONIZATION_METRIC)
    metric.add_batch(predictions=preds, references=reals, masks=masks)
    metric.compute(protocol="default")
"""

from pathlib import Path

from .functional import (
    METRIC_NAMES,
    MIN_MSE,
    aggregate,
    fmse,
    fpsnr,
    harmonization_metrics,
    mse,
    psnr,
    score_harmonization,
    squared_error,
)
from .protocol import PROTOCOLS, EvalProtocol, apply_protocol, get_protocol, prepare_mask, resize_image

#: File path of the `evaluate` metric module: ``evaluate.load(HARMONIZATION_METRIC)`` works offline.
HARMONIZATION_METRIC = str(Path(__file__).resolve().parent / "harmonization.py")

__all__ = [
    "HARMONIZATION_METRIC",
    "METRIC_NAMES",
    "MIN_MSE",
    "PROTOCOLS",
    "EvalProtocol",
    "aggregate",
    "apply_protocol",
    "fmse",
    "fpsnr",
    "get_protocol",
    "harmonization_metrics",
    "mse",
    "prepare_mask",
    "psnr",
    "resize_image",
    "score_harmonization",
    "squared_error",
]
