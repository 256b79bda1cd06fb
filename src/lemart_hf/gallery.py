"""Before/after galleries: composites next to what each method makes of them, as PNG pages and an HTML page.

Real composites have no ground truth, so they are judged by eye; `colour_shifts` adds a number to look at first:
how far each method moved the foreground's mean lightness (ΔL*) and colour (Δa*b*, CIE Lab) away from the composite.
A model that adds colour casts shows up as large Δa*b* where the composite needed little (compare with the colour
transfer baseline, which moves every foreground to its background's colour).

    from lemart_hf.gallery import composite_folder, make_gallery
    rows = composite_folder("composites/")                      # NAME.jpg + NAME_mask.png
    methods = {"harmonized": pipeline_method(pipe), "colour transfer": reinhard_method}
    gallery = make_gallery(rows, methods, "outputs/gallery")   # page_01.png ..., index.html, shifts.json
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data.composite_folders import composite_paths, mask_path
from .data.iharmony4 import pil_to_tensor
from .lemart.image_loading import IMAGE_EXTENSIONS
from .models.swinih.image_processing_swinih import to_pil

#: Real composites shipped with the package (see its README.md for their source and licence), for the demo.
SAMPLE_COMPOSITES_DIR = Path(__file__).resolve().parent / "sample_composites"
#: A method: (composite RGB, mask "L", same size) -> harmonized RGB of that size.
Method = Callable[[Image.Image, Image.Image], Image.Image]


@dataclass
class GalleryRow:
    name: str
    composite: Image.Image  # RGB
    mask: Image.Image  # "L", 255 = the pasted region


def composite_folder(folder: str | Path, max_side: int | None = 384, limit: int | None = None) -> list[GalleryRow]:
    """The composites of ``folder`` (``NAME.<ext>`` with ``NAME_mask.png``), sorted by name, shrunk to ``max_side``.

    Raises `FileNotFoundError` for a missing folder, an empty one, or a composite without its mask.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"composite folder not found: {folder}")
    paths = composite_paths(folder)[:limit]
    if not paths:
        raise FileNotFoundError(f"no composites ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    rows = []
    for path in paths:
        mask_file = mask_path(path)
        if not mask_file.is_file():
            raise FileNotFoundError(f"no mask for {path}: expected {mask_file}")
        with Image.open(path) as image, Image.open(mask_file) as mask:
            composite, mask = image.convert("RGB"), mask.convert("L")
        if max_side and max(composite.size) > max_side:
            scale = max_side / max(composite.size)
            size = (max(1, round(composite.width * scale)), max(1, round(composite.height * scale)))
            composite, mask = composite.resize(size, Image.BICUBIC), mask.resize(size, Image.BILINEAR)
        rows.append(GalleryRow(path.stem, composite, mask))
    return rows


def _binary_mask(mask: Image.Image) -> torch.Tensor:
    """(1, H, W) 0/1 float: the mask thresholded at 0.5, as the evaluation protocol has it."""
    return (pil_to_tensor(mask, mask=True) > 0.5).float()


def pipeline_method(pipe) -> Method:
    """A method running an ``"image-harmonization"`` pipeline."""
    return lambda composite, mask: pipe(composite, mask)


def reinhard_method(composite: Image.Image, mask: Image.Image) -> Image.Image:
    """Reinhard colour transfer of the foreground to the background (`lemart_hf.baselines`), the classic baseline."""
    from .baselines import reinhard_color_transfer

    return to_pil(reinhard_color_transfer(pil_to_tensor(composite)[None], _binary_mask(mask)[None])[0])


def colour_shift(composite: Image.Image, result: Image.Image, mask: Image.Image) -> dict[str, float]:
    """How ``result`` moved the foreground's mean away from ``composite``'s: ``{"dL": ΔL*, "dab": |Δ(a*, b*)|}``.

    Both in CIE Lab units (L* in 0..100); ``dL`` signed (positive: lighter), ``dab`` the length of the chroma shift.
    """
    import kornia

    weights = _binary_mask(mask)
    area = weights.sum().clamp_min(1.0)
    means = [
        (kornia.color.rgb_to_lab(pil_to_tensor(image)[None])[0] * weights).sum(dim=(1, 2)) / area
        for image in (composite, result)
    ]
    delta = means[1] - means[0]
    return {"dL": float(delta[0]), "dab": float(delta[1:].norm())}


def colour_shifts(rows: Sequence[GalleryRow], outputs: dict[str, list[Image.Image]]) -> dict[str, dict]:
    """Per method: per-image shifts (`colour_shift`), their means and the images with the largest Δa*b*."""
    summary = {}
    for method, images in outputs.items():
        shifts = {row.name: colour_shift(row.composite, image, row.mask) for row, image in zip(rows, images)}
        ranked = sorted(shifts, key=lambda name: -shifts[name]["dab"])
        summary[method] = {
            "mean_abs_dL": float(np.mean([abs(s["dL"]) for s in shifts.values()])),
            "mean_dab": float(np.mean([s["dab"] for s in shifts.values()])),
            "largest_dab": [(name, round(shifts[name]["dab"], 2)) for name in ranked[:5]],
            "images": shifts,
        }
    return summary


def _mask_overlay(composite: Image.Image, mask: Image.Image) -> Image.Image:
    """The composite with the region outside the mask dimmed, to show what was pasted."""
    dimmed = Image.blend(composite, Image.new("RGB", composite.size, (0, 0, 0)), 0.6)
    return Image.composite(composite, dimmed, mask.point(lambda v: 255 if v > 127 else 0))


def _page(rows, columns: list[str], cells: list[list[Image.Image]], thumb: int) -> Image.Image:
    label_h, name_w, pad = 18, 70, 4
    width = name_w + len(columns) * (thumb + pad)
    page = Image.new("RGB", (width, label_h + len(rows) * (thumb + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for j, column in enumerate(columns):
        draw.text((name_w + j * (thumb + pad) + 2, 3), column, fill=(0, 0, 0))
    y = label_h
    for row, row_cells in zip(rows, cells):
        draw.text((2, y + 2), row.name, fill=(0, 0, 0))
        for j, image in enumerate(row_cells):
            shown = image.copy()
            shown.thumbnail((thumb, thumb))
            page.paste(shown, (name_w + j * (thumb + pad), y))
        y += thumb + pad
    return page


def make_gallery(
    rows: Sequence[GalleryRow],
    methods: dict[str, Method],
    output_dir: str | Path,
    *,
    thumb: int = 192,
    rows_per_page: int = 10,
    title: str = "Harmonization gallery",
) -> dict:
    """Run every method on every composite and write the gallery to ``output_dir``.

    Writes ``page_NN.png`` (columns: mask overlay | composite | one per method; ``rows_per_page`` composites
    each), ``images/<name>__<method>.png`` (full size), ``index.html`` (every image, with its Δa*b*) and
    ``shifts.json`` (`colour_shifts`). Returns ``{"pages": [paths], "html": path, "shifts": colour_shifts}``.
    """
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    outputs = {method: [run(row.composite, row.mask).convert("RGB") for row in rows] for method, run in methods.items()}
    shifts = colour_shifts(rows, outputs)
    columns = ["pasted region", "composite", *methods]
    cells = [
        [_mask_overlay(row.composite, row.mask), row.composite, *(outputs[m][i] for m in methods)]
        for i, row in enumerate(rows)
    ]
    pages = []
    for start in range(0, len(rows), rows_per_page):
        path = output_dir / f"page_{start // rows_per_page + 1:02d}.png"
        _page(rows[start : start + rows_per_page], columns, cells[start : start + rows_per_page], thumb).save(path)
        pages.append(path)
    slug = {column: column.replace(" ", "_").replace("/", "_") for column in columns}
    html_rows = []
    for i, row in enumerate(rows):
        tds = []
        for column, image in zip(columns, cells[i]):
            file = f"images/{row.name}__{slug[column]}.png"
            image.save(output_dir / file)
            shift = shifts[column]["images"][row.name] if column in shifts else None
            caption = f"{column}" + (f" (ΔL* {shift['dL']:+.1f}, Δa*b* {shift['dab']:.1f})" if shift else "")
            tds.append(f'<td><img src="{html.escape(file)}" width="{thumb}"><br><small>{html.escape(caption)}</small></td>')
        html_rows.append(f"<tr><th>{html.escape(row.name)}</th>{''.join(tds)}</tr>")
    summary_rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{s['mean_abs_dL']:.2f}</td><td>{s['mean_dab']:.2f}</td></tr>"
        for m, s in shifts.items()
    )
    page_html = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
        "<p>Mean foreground shift from the composite (CIE Lab): |ΔL*| lightness, Δa*b* colour.</p>"
        f"<table border=1><tr><th>method</th><th>mean |ΔL*|</th><th>mean Δa*b*</th></tr>{summary_rows}</table>"
        f"<table>{''.join(html_rows)}</table>"
    )
    html_path = output_dir / "index.html"
    html_path.write_text(page_html, encoding="utf-8")
    (output_dir / "shifts.json").write_text(json.dumps(shifts, indent=1) + "\n")
    return {"pages": pages, "html": html_path, "shifts": shifts}
