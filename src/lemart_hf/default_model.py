"""The released general-purpose model shipped inside the package: what `pipeline("image-harmonization")` and
`lemart-harmonize composite.jpg mask.png` use when no model is named, offline.

It is `model_cards/swinih-lemart-general` (SwinIH-tiny, LEMaRT pre-trained on unlabeled photos, fine-tuned on
HOutdoor + HDiverse; see its card) without the card and the remote-code copies: config, float16 weights (~2 MB;
loaded as float32) and the image processor config.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "swinih-lemart-general"
#: The folder of the packaged default model (a `save_pretrained` folder).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "released" / DEFAULT_MODEL_NAME
#: The files a release folder copies into the package.
DEFAULT_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def default_model_path() -> str:
    """The packaged default model's folder; `FileNotFoundError` naming it if the install lacks it."""
    missing = [name for name in DEFAULT_MODEL_FILES if not (DEFAULT_MODEL_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the packaged default model is incomplete ({', '.join(missing)} missing in {DEFAULT_MODEL_DIR}); "
            "reinstall lemart_hf or name a model"
        )
    return str(DEFAULT_MODEL_DIR)
