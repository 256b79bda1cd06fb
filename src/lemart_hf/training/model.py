"""The model to train: a config from a preset name or a file (`resolve_model_config`), and the model and its
image processor from ``--model_name_or_path`` or that config (`load_model`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .accelerator import _prog


def resolve_model_config(name_or_path: str | None, model_type: str | None = None, **overrides):
    """A preset name, a config JSON file or a folder with config.json -> the architecture's config.

    Args:
        name_or_path: a preset of any architecture (e.g. ``"swinih-tiny"``, ``"vit-tiny"``), a path, or None for
            the default preset of ``model_type``.
        model_type: an architecture of `lemart_hf.models.architectures.ARCHITECTURES`; when given, the preset or
            file must be of that architecture.
        overrides: config attributes to set.
    Raises:
        ValueError: unknown preset or model type, a file of another architecture, or a path that does not exist.
    """
    from ..models.architectures import ARCHITECTURES, architecture_of_preset, get_architecture

    wanted = get_architecture(model_type) if model_type is not None else None
    if name_or_path is None:
        arch = wanted or ARCHITECTURES["swinih"]
        return arch.config_class.from_preset(arch.config_class.default_preset, **overrides)
    arch = architecture_of_preset(name_or_path)
    if arch is None:
        path = Path(name_or_path)
        if path.is_dir() and (path / "config.json").is_file():
            path = path / "config.json"
        if not path.is_file():
            presets = sorted(p for a in ARCHITECTURES.values() for p in a.presets)
            raise ValueError(f"{name_or_path!r} is neither a preset ({', '.join(presets)}) nor a config file/folder")
        saved_type = json.loads(path.read_text()).get("model_type")
        if saved_type is None:  # a hand-written file: the architecture asked for, else SwinIH
            arch = wanted or ARCHITECTURES["swinih"]
        else:
            matches = [a for a in ARCHITECTURES.values() if a.config_class.model_type == saved_type]
            if not matches:
                raise ValueError(f"{str(path)!r} has model_type {saved_type!r}, not one of lemart_hf's architectures")
            arch = matches[0]
        config = arch.config_class.from_json_file(str(path))
        for key, value in overrides.items():
            setattr(config, key, value)
    else:
        config = arch.config_class.from_preset(name_or_path, **overrides)
    if wanted is not None and arch is not wanted:
        raise ValueError(f"{name_or_path!r} is a {arch.name} config, but --model_type is {wanted.name}")
    return config


def load_model(args: argparse.Namespace):
    """The model to train and its image processor (working size ``--resolution``).

    From ``--model_name_or_path`` (any architecture registered with `AutoModelForImageToImage`) or a fresh model of
    ``--model_type`` / ``--model_config``. The config's ``loss_type`` is set to ``--loss_type``. A model that
    cannot be loaded exits with a one-line error.
    """
    from safetensors import SafetensorError
    from transformers import AutoImageProcessor, AutoModelForImageToImage

    from ..models.architectures import architecture_of_config
    from ..models.swinih import SwinIHImageProcessor

    size = {"height": args.resolution, "width": args.resolution}
    if args.model_name_or_path is not None:
        try:
            model = AutoModelForImageToImage.from_pretrained(args.model_name_or_path)
        except (OSError, ValueError, SafetensorError) as error:
            raise SystemExit(f"{_prog()}: error: --model_name_or_path could not be loaded: {error}") from error
        try:
            image_processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
            image_processor.size = size
        except (OSError, ValueError):
            image_processor = SwinIHImageProcessor(size=size)
    else:
        config = resolve_model_config(args.model_config, getattr(args, "model_type", None))
        model = architecture_of_config(config).model_class(config)
        image_processor = SwinIHImageProcessor(size=size)
    model.config.loss_type = args.loss_type
    if args.gradient_checkpointing:  # transformers >= 5.2x renamed it
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model, image_processor
