#!/usr/bin/env python
"""A web demo of image harmonization (Gradio, as Hugging Face Spaces run it), on CPU.

Upload a composite and its mask, or paint the pasted region on the composite with the brush, pick a model folder,
and see the composite next to its harmonization. The real composites shipped with the package are the examples.

    python examples/app.py                                                   # the packaged model, 127.0.0.1:7860
    python examples/app.py --model model_cards/swinih-tiny-lemart-houtdoor --port 7861

Needs ``pip install gradio`` (or ``pip install -e ".[demo]"``).
"""

from __future__ import annotations

import argparse
import functools

import gradio as gr
import numpy as np
from PIL import Image

from lemart_hf import ImageHarmonizationPipeline
from lemart_hf.data.composite_folders import composite_paths, mask_path
from lemart_hf.default_model import DEFAULT_MODEL_NAME, default_model_path
from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR

TITLE = "LEMaRT image harmonization"
IMAGE_HEIGHT = 320  # pixels on the page; the images keep their size


def packaged_model() -> tuple[str, str]:
    """The packaged default model's folder and a line about it; ``("", why)`` if this install lacks it."""
    try:
        return default_model_path(), f"Default: the packaged model, {DEFAULT_MODEL_NAME}."
    except FileNotFoundError:
        return "", f"The packaged model ({DEFAULT_MODEL_NAME}) is not in this install: name a model folder or hub id."


@functools.lru_cache(maxsize=2)
def load_pipeline(model: str):
    """The ``"image-harmonization"`` pipeline of a model folder or hub id, on CPU, with lemart_hf's own code."""
    from transformers import pipeline

    return pipeline("image-harmonization", model=model, pipeline_class=ImageHarmonizationPipeline, device="cpu")


def painted_mask(editor: dict | None) -> Image.Image | None:
    """The region painted with the editor's brush, as an "L" mask (the strokes' opacity); None if nothing is painted."""
    layers = [np.asarray(layer.convert("RGBA"))[..., 3] for layer in (editor or {}).get("layers") or []]
    if not layers:
        return None
    alpha = np.max(layers, axis=0)
    return Image.fromarray(alpha) if alpha.any() else None


def harmonize(editor: dict | None, mask: Image.Image | None, model: str) -> tuple[Image.Image, Image.Image]:
    """The app's action: (composite, harmonized). Bad input raises `gr.Error`, which the page shows as a message.

    ``editor`` is the ImageEditor's value (the composite as its background, brush strokes as layers); an uploaded
    ``mask`` takes precedence over the strokes.
    """
    composite = (editor or {}).get("background")
    if composite is None:
        raise gr.Error("Upload a composite first.")
    composite = composite.convert("RGB")
    mask = mask.convert("L") if mask is not None else painted_mask(editor)
    if mask is None:
        raise gr.Error("No mask: upload the composite's mask, or paint the pasted region with the brush.")
    if mask.size != composite.size:
        raise gr.Error(
            f"The mask is {mask.width}x{mask.height} but the composite is {composite.width}x{composite.height}: "
            "upload the composite's own mask (same size)."
        )
    if not np.asarray(mask).any():
        raise gr.Error("The mask is empty (all black): it must be white (255) on the pasted region.")
    model = model.strip()
    if not model:
        raise gr.Error("Name a model folder or hub id.")
    try:
        pipe = load_pipeline(model)
    except (OSError, ValueError) as error:
        raise gr.Error(f"Cannot load the model {model!r}: {error}") from error
    try:
        return composite, pipe(composite, mask)
    except ValueError as error:  # the pipeline's messages name the problem (e.g. corrupt weights that predict NaN)
        raise gr.Error(str(error)) from error


def examples() -> list[list]:
    """The real composites shipped with the package, as (editor value, mask path) rows."""
    rows = []
    for path in composite_paths(SAMPLE_COMPOSITES_DIR):
        composite = str(path)
        rows.append([{"background": composite, "layers": [], "composite": composite}, str(mask_path(path))])
    return rows


def build_app(model: str = "") -> gr.Blocks:
    """The page: composite (with a brush) and mask, the model folder, then composite | harmonized, and the examples."""
    default, note = packaged_model()
    image = {"type": "pil", "format": "png", "height": IMAGE_HEIGHT}  # PNG: the images travel losslessly
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(
            f"# {TITLE}\nUpload a composite and its mask (white = the pasted region), or paint the pasted region on "
            "the composite with the brush, then press Harmonize."
        )
        with gr.Row():
            editor = gr.ImageEditor(
                label="Composite (brush: paint the pasted region)", image_mode="RGBA", sources=["upload", "clipboard"],
                transforms=(), layers=False, brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                elem_id="composite", **image,
            )  # fmt: skip
            mask = gr.Image(
                label="Mask (overrides the brush)", image_mode="L", sources=["upload"], elem_id="mask", **image
            )
        model_box = gr.Textbox(value=model or default, label="Model folder or hub id", info=note, elem_id="model")
        run = gr.Button("Harmonize", variant="primary", elem_id="harmonize")
        with gr.Row():
            shown = gr.Image(label="Composite", interactive=False, elem_id="shown", **image)
            result = gr.Image(label="Harmonized", interactive=False, elem_id="result", **image)
        gr.Examples(examples(), inputs=[editor, mask], label="Real composites shipped with lemart_hf")
        run.click(harmonize, inputs=[editor, mask, model_box], outputs=[shown, result])
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="Model folder or hub id (default: the packaged model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    build_app(args.model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
