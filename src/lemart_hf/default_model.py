"""The released general-purpose model shipped inside the package: what `pipeline("image-harmonization")` and
`lemart-harmonize composite.jpg mask.png` use when no model is named, offline.

It is `model_cards/swinih-lemart-general` (SwinIH-tiny, LEMaRT pre-trained on unlabeled photos, fine-tuned on
HOutdoor + HDiverse; see its card) without the card and the remote-code copies: config, float16 weights (4.2 MB;
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


def write_package_default(release: str | Path, destination: str | Path = DEFAULT_MODEL_DIR) -> Path:
    """Copy a release folder's model into the package as the default (``DEFAULT_MODEL_FILES``).

    The weights and processor config are copied byte for byte. The config drops ``custom_pipelines``: a folder that
    declares its pipeline makes transformers ask for ``trust_remote_code``, and the packaged model runs the
    installed lemart_hf code anyway. Returns the destination folder.
    """
    import json
    import shutil

    release, destination = Path(release), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "preprocessor_config.json"):
        shutil.copyfile(release / name, destination / name)
    config = json.loads((release / "config.json").read_text())
    config.pop("custom_pipelines", None)
    (destination / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return destination
