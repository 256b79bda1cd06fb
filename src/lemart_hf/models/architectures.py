"""The harmonization architectures of lemart_hf, by the name the training scripts take (`--model_type`).

Every one follows the same contract (DESIGN.md §3): a `HarmonizationConfig` subclass with named presets and a
`...ForHarmonization` model built on `HarmonizationModelMixin`; all share the image processor, the pipeline, the
LEMaRT composer and the training scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .configuration_harmonization import HarmonizationConfig
from .harmony_transformer import HarmonyTransformerConfig, HarmonyTransformerForHarmonization
from .hrnet import HRNetIHConfig, HRNetIHForHarmonization
from .resnet_generator import ResNetGeneratorConfig, ResNetGeneratorForHarmonization
from .swinih import SwinIHConfig, SwinIHForHarmonization, SwinIHModel
from .vit import ViTIHConfig, ViTIHForHarmonization


@dataclass(frozen=True)
class Architecture:
    """One architecture: its config class, its harmonization model and (where it has one) a headless backbone."""

    name: str
    display_name: str
    config_class: type[HarmonizationConfig]
    model_class: type
    backbone_class: type | None = None

    @property
    def presets(self) -> list[str]:
        return sorted(self.config_class.presets)


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("swinih", "SwinIH", SwinIHConfig, SwinIHForHarmonization, SwinIHModel),
        Architecture("vit", "ViT", ViTIHConfig, ViTIHForHarmonization),
        Architecture("resnet_generator", "ResNet generator", ResNetGeneratorConfig, ResNetGeneratorForHarmonization),
        Architecture("hrnet", "HRNet", HRNetIHConfig, HRNetIHForHarmonization),
        Architecture("harmony_transformer", "HT+", HarmonyTransformerConfig, HarmonyTransformerForHarmonization),
    )
}


def get_architecture(name: str) -> Architecture:
    """`ARCHITECTURES[name]`, or a ValueError that lists the choices."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model type {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def architecture_of_preset(preset: str) -> Architecture | None:
    """The architecture that has a preset of this name (preset names are unique across architectures)."""
    for arch in ARCHITECTURES.values():
        if preset in arch.config_class.presets:
            return arch
    return None


def architecture_of_config(config) -> Architecture:
    """The architecture of a config instance (by its `model_type`)."""
    for arch in ARCHITECTURES.values():
        if arch.config_class.model_type == config.model_type:
            return arch
    raise ValueError(f"model_type {config.model_type!r} is not one of lemart_hf's harmonization architectures")


__all__ = ["ARCHITECTURES", "Architecture", "architecture_of_config", "architecture_of_preset", "get_architecture"]
