"""One evaluation loop for every harmonizer: models, baselines, fine-tuning's final evaluation.

``evaluate_harmonization(predict_fn, dataset)`` runs ``predict_fn`` over an iHarmony4-style dataset under
an evaluation protocol (`lemart_hf.metrics.protocol`) and returns a `HarmonizationResults`: per-image
MSE / PSNR / fMSE / fPSNR, and the table of the paper (rows: the subsets, then "All" = the mean over all
images, not the mean of the subset means).

``predict_fn`` takes ``pixel_values`` (B, 4, H, W) = cat([composite RGB in [0, 1], mask]) at the protocol
size (256x256) and returns the harmonized RGB (B, 3, H', W') in [0, 1] — a tensor, or an output with a
``harmonized`` attribute/key (a `SwinIHForHarmonization` can be passed as ``lambda x: model(pixel_values=x)``).
A prediction of another size is resized to the protocol size like any image.

Training and its final evaluation (e.g. ``examples/run_finetune.py``) read the data the same way::

    from torch.utils.data import DataLoader
    from lemart_hf.data import HarmonizationCollator, load_iharmony4
    from lemart_hf.evaluation import evaluate_harmonization

    train = load_iharmony4(root, split="train", fraction=0.5)  # 50% of the labels, seeded
    loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=HarmonizationCollator(train=True))
    # batches: pixel_values (B, 4, 256, 256), real (labels), mask — random crop + flip, mask binary
    ...
    model.eval()
    results = evaluate_harmonization(
        lambda x: model(pixel_values=x), load_iharmony4(root, split="test"), accelerator=accelerator
    )
    if accelerator.is_main_process:
        print(results)
        results.save(output_dir)  # results.json + results.md

With an `accelerate.Accelerator`, the data are sharded across processes and the per-image values gathered
with ``gather_for_metrics`` (no duplicates from the padding of the last batch); every process returns the
same full results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .data.iharmony4 import HarmonizationCollator, subset_sort_key, without_image_decoding
from .highres import TRANSFER_METHODS, transfer_harmonization
from .metrics.functional import METRIC_NAMES, aggregate, harmonization_metrics
from .metrics.protocol import EvalProtocol, get_protocol, resize_image
from .stopping import ignore_stop_signals

ALL = "All"
_COLUMNS = (("mse", "MSE ↓", ".2f"), ("psnr", "PSNR ↑", ".2f"), ("fmse", "fMSE ↓", ".1f"), ("fpsnr", "fPSNR ↑", ".2f"))


class NonFinitePredictionError(ValueError):
    """``predict_fn`` returned NaN / inf values (e.g. corrupt or diverged weights); the message names the images."""


def _harmonized_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and "harmonized" in output:
        return output["harmonized"]
    harmonized = getattr(output, "harmonized", None)
    if harmonized is None:
        raise TypeError(f"predict_fn must return a tensor or an output with 'harmonized', got {type(output).__name__}")
    return harmonized


def model_predictor(
    model: torch.nn.Module,
    working_size: int | tuple[int, int] | None = None,
    highres_method: str = "affine",
    *,
    radius: int | None = None,
    prepared: torch.nn.Module | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``predict_fn`` for `evaluate_harmonization` that runs ``model`` the way the "image-harmonization" pipeline
    does: at its working size, with the correction carried to the input's size by `highres.transfer_harmonization`.

    Args:
        model: a ``...ForHarmonization`` model, in eval mode, on the device of the inputs.
        working_size: the side (or (height, width)) the network runs at, e.g. its image processor's ``size`` or the
            training ``--resolution``. ``None``, or the input's own size: the model runs on the input as it is.
        highres_method: see `highres.TRANSFER_METHODS`.
        radius: the transfer's window radius in working-size pixels (default: `highres.default_radius`).
        prepared: ``model`` as `Accelerator.prepare` returned it (DDP, FSDP, a DeepSpeed engine), run instead of
            ``model`` (which then only gives the config): its forward pass gathers parameters sharded across the
            processes, so every process must call it, as `evaluate_harmonization` with an accelerator does.
    Returns:
        ``pixel_values`` (B, 4, H, W) in [0, 1] -> harmonized (B, 3, H, W) in [0, 1]. Inputs are resized to the
        working size with antialiased bilinear interpolation (composite and mask alike, the mask kept soft), as the
        image processor does.
    """
    if highres_method not in TRANSFER_METHODS:
        raise ValueError(f"highres_method must be one of {TRANSFER_METHODS}, got {highres_method!r}")
    size = (working_size, working_size) if isinstance(working_size, int) else working_size
    blended = bool(getattr(model.config, "blend_background", False))
    network = model if prepared is None else prepared

    def predict(pixel_values: torch.Tensor) -> torch.Tensor:
        if size is None or tuple(size) == tuple(pixel_values.shape[-2:]):
            return network(pixel_values=pixel_values).harmonized
        low = resize_image(pixel_values.float(), tuple(size), antialias=True).clamp_(0, 1)
        prediction = network(pixel_values=low.to(pixel_values.dtype)).harmonized.float()
        return torch.stack(
            [
                transfer_harmonization(
                    full[:3],
                    full[3:],
                    predicted,
                    small[:3],
                    small[3:],
                    method=highres_method,
                    radius=radius,
                    prediction_is_blended=blended,
                )
                for full, small, predicted in zip(pixel_values.float(), low, prediction)
            ]
        )

    return predict


def summarize(per_image: Mapping[str, Sequence]) -> dict[str, dict[str, float]]:
    """Per-image values (columns ``subset``, ``mse``, ``psnr``, ``fmse``, ``fpsnr``) -> the table.

    Returns ``{subset: {"images", "mse", "psnr", "fmse", "fpsnr", "empty_foreground", "non_finite"}, ...,
    "All": {...}}``, subsets in table order (HCOCO, HAdobe5k, HFlickr, Hday2night, others). Means are over images;
    fMSE and fPSNR leave out images whose foreground is empty (NaN per image) and count them in
    ``empty_foreground`` (see `metrics.functional.aggregate`, also for ``non_finite``).
    """
    subsets = list(per_image["subset"])
    values = {k: torch.as_tensor(per_image[k], dtype=torch.float64) for k in METRIC_NAMES}
    table: dict[str, dict[str, float]] = {}
    for subset in sorted(set(subsets), key=subset_sort_key):
        keep = torch.tensor([s == subset for s in subsets], dtype=torch.bool)
        table[subset] = aggregate({k: v[keep] for k, v in values.items()})
    table[ALL] = aggregate(values)
    return table


@dataclass
class HarmonizationResults:
    """What `evaluate_harmonization` returns.

    Attributes:
        table: ``{row: {"images", "mse", "psnr", "fmse", "fpsnr", "empty_foreground", "non_finite"}}``, rows =
            subsets + "All".
        per_image: columns ``name``, ``subset``, ``mse``, ``psnr``, ``fmse``, ``fpsnr`` (lists, one entry per image).
        protocol: the protocol the numbers were computed under.
        title: a label for the table (method name).
    """

    table: dict[str, dict[str, float]]
    per_image: dict[str, list]
    protocol: EvalProtocol
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, row: str) -> dict[str, float]:
        return self.table[row]

    @property
    def all(self) -> dict[str, float]:
        return self.table[ALL]

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        out = {"title": self.title, "protocol": self.protocol.to_dict(), "table": self.table, **self.extra}
        if per_image:
            out["per_image"] = self.per_image_records()
        return out

    def per_image_records(self) -> list[dict[str, Any]]:
        """One dict per image: ``name``, ``subset``, ``mse``, ``psnr``, ``fmse``, ``fpsnr``."""
        keys = list(self.per_image)
        return [dict(zip(keys, values)) for values in zip(*(self.per_image[k] for k in keys))]

    def to_markdown(self) -> str:
        """The table as Markdown, like the paper's Table 1 (rows: subsets and All)."""
        header = "| Subset | Images | " + " | ".join(c[1] for c in _COLUMNS) + " |"
        lines = []
        if self.title:
            lines.append(f"**{self.title}**\n")
        lines += [header, "| --- | ---: | " + " | ".join("---:" for _ in _COLUMNS) + " |"]
        for row, values in self.table.items():
            cells = [f"{values[k]:{fmt}}" if not math.isnan(values[k]) else "n/a" for k, _, fmt in _COLUMNS]
            name = f"**{row}**" if row == ALL else row
            lines.append(f"| {name} | {values['images']} | " + " | ".join(cells) + " |")
        p = self.protocol
        peak = "= the real image's max" if p.peak == "real_max" else f"{float(p.peak):g}"
        resize = "antialiased bilinear" if p.antialias else "bilinear (no antialias)"
        mask = "mask thresholded at 0.5" if p.binary_mask else "soft mask"
        notes = [
            f"Protocol `{p.name}`: {p.size[0]}x{p.size[1]}, {resize} resize, {mask}, values 0..255, PSNR peak {peak}",
            "means over images; All = mean over all images.",
        ]
        empty = self.table[ALL]["empty_foreground"]
        if empty:
            notes.append(f"{empty} image(s) with an empty foreground are left out of fMSE/fPSNR.")
        failed = self.table[ALL].get("non_finite", 0)
        if failed:
            notes.append(f"{failed} prediction(s) with NaN / inf values make the means n/a.")
        return "\n".join(lines) + "\n\n" + "; ".join(notes) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    def save(self, output_dir: str | os.PathLike, stem: str = "results") -> tuple[str, str]:
        """Writes ``<stem>.json`` (table + per-image values) and ``<stem>.md``; returns their paths."""
        os.makedirs(output_dir, exist_ok=True)
        json_path = os.path.join(output_dir, f"{stem}.json")
        md_path = os.path.join(output_dir, f"{stem}.md")
        data = _jsonable(self.to_dict(per_image=True))
        records = data.pop("per_image")
        text = json.dumps(data, indent=2)[:-2]  # one line per image keeps the file small and diffable
        text += ',\n  "per_image": [\n' + ",\n".join("    " + json.dumps(r) for r in records) + "\n  ]\n}\n"
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(text)
        with open(md_path, "w", encoding="utf-8") as f:
            f.write(self.to_markdown())
        return json_path, md_path


def _jsonable(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


@torch.no_grad()
def evaluate_harmonization(
    predict_fn: Callable[[torch.Tensor], Any],
    dataset,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    protocol: str | EvalProtocol = "default",
    accelerator=None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_batch: Callable[[dict, torch.Tensor], None] | None = None,
    title: str = "",
) -> HarmonizationResults:
    """Scores ``predict_fn`` on ``dataset`` under ``protocol``.

    Args:
        predict_fn: ``pixel_values`` (B, 4, H, W) in [0, 1] at the protocol size -> harmonized (B, 3, H', W') in
            [0, 1] (or an output with ``harmonized``). Called under ``torch.no_grad`` (and the accelerator's
            autocast when one is given); put a model in eval mode and on the device first.
        dataset: rows with ``composite``, ``mask``, ``real`` (PIL images, paths or tensors), ``subset``, ``name``
            — e.g. `lemart_hf.data.load_iharmony4(...)` — or a ready `torch.utils.data.DataLoader` whose batches
            are `HarmonizationCollator` batches.
        batch_size, num_workers: of the DataLoader built here.
        protocol: ``"default"``, ``"is2am"`` or an `EvalProtocol`.
        accelerator: an `accelerate.Accelerator`: shards the data, gathers per-image values across processes.
        device: where to run without an accelerator (default: cpu).
        progress: a tqdm bar (on the local main process only).
        on_batch: called on every process as ``on_batch(batch, harmonized)`` after each prediction (batch on the
            device, harmonized (B, 3, H, W) at the protocol size) — e.g. to save images.
        title: a label for the table.
    Returns:
        `HarmonizationResults`; identical on every process.
    Raises:
        NonFinitePredictionError: a prediction with NaN / inf values (the first batch that has one; its images named).
        lemart_hf.data.DataFileError: a row's file cannot be read, or its mask's size differs from its composite's.
    """
    protocol = get_protocol(protocol)
    if isinstance(dataset, torch.utils.data.DataLoader):
        dataloader = dataset
    else:
        dataloader = torch.utils.data.DataLoader(
            without_image_decoding(dataset),  # decoded by the collator, which names a file it cannot read
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=HarmonizationCollator(protocol),
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=ignore_stop_signals if num_workers > 0 else None,  # a validation inside a training run
        )
    if accelerator is not None:
        dataloader = accelerator.prepare(dataloader)
        device = accelerator.device
    device = torch.device(device or "cpu")
    show = progress and (accelerator is None or accelerator.is_local_main_process)
    if show:
        from tqdm.auto import tqdm

        iterator = tqdm(dataloader, desc=f"Evaluating{' ' + title if title else ''}", unit="batch")
    else:
        iterator = dataloader

    collected: dict[str, list] = {"name": [], "subset": [], **{k: [] for k in METRIC_NAMES}}
    for batch in iterator:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        pixel_values = batch.get("pixel_values")
        if pixel_values is None:
            pixel_values = torch.cat([batch["composite"], batch["mask"]], dim=1)
        if accelerator is not None:
            with accelerator.autocast():
                output = predict_fn(pixel_values)
        else:
            output = predict_fn(pixel_values)
        harmonized = resize_image(_harmonized_tensor(output).float(), protocol.size, protocol.antialias)
        failed = (~harmonized.isfinite()).flatten(1).any(dim=1).nonzero().flatten().tolist()
        if failed:
            names = ", ".join(f"{batch['subset'][i]}/{batch['name'][i]}" for i in failed)
            raise NonFinitePredictionError(f"the prediction holds NaN or inf values for {names}")
        if on_batch is not None:
            on_batch(batch, harmonized)
        scores = harmonization_metrics(harmonized, batch["real"], batch["mask"], peak=protocol.peak)
        names, subsets = list(batch["name"]), list(batch["subset"])
        if accelerator is not None:
            scores = accelerator.gather_for_metrics(scores)
            names = accelerator.gather_for_metrics(names, use_gather_object=True)
            subsets = accelerator.gather_for_metrics(subsets, use_gather_object=True)
        collected["name"].extend(names)
        collected["subset"].extend(subsets)
        for k in METRIC_NAMES:
            collected[k].extend(scores[k].double().cpu().tolist())

    if not collected["name"]:
        raise ValueError("the dataset is empty: nothing to evaluate")
    return HarmonizationResults(table=summarize(collected), per_image=collected, protocol=protocol, title=title)
