"""Registers lemart_hf's models with the transformers Auto classes (run once on `import lemart_hf`).

Besides the in-process registration, `register_for_auto_class` makes `save_pretrained` copy the model's source
next to its weights, so a saved folder also loads with `trust_remote_code=True` where lemart_hf is not installed.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageToImage
from transformers.pipelines import PIPELINE_REGISTRY

from .default_model import DEFAULT_MODEL_DIR
from .models.architectures import ARCHITECTURES
from .models.swinih import SwinIHImageProcessor
from .pipelines import ImageHarmonizationPipeline


def register_auto_classes() -> None:
    """Register config, model and image processor of every architecture.

    `AutoModelForImageToImage` gives the harmonization model; `AutoModel` the headless backbone where the
    architecture has one (SwinIH), else the harmonization model too. Every architecture takes the same 4-channel
    input, so they share one image processor.
    """
    for arch in ARCHITECTURES.values():
        config_class, harmonization_class = arch.config_class, arch.model_class
        backbone_class = arch.backbone_class or harmonization_class
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, backbone_class, exist_ok=True)
        AutoModelForImageToImage.register(config_class, harmonization_class, exist_ok=True)
        AutoImageProcessor.register(config_class, slow_image_processor_class=SwinIHImageProcessor, exist_ok=True)
        config_class.register_for_auto_class()
        backbone_class.register_for_auto_class("AutoModel")
        harmonization_class.register_for_auto_class("AutoModelForImageToImage")
    SwinIHImageProcessor.register_for_auto_class("AutoImageProcessor")


def register_pipelines() -> None:
    """Register the "image-harmonization" task with transformers' `pipeline()`.

    `pipe.save_pretrained` then writes `custom_pipelines` into the config and copies the pipeline's source (as
    `lemart_hf.hub.save_hub_folder` does for every model folder), so the task also loads with
    `pipeline(..., trust_remote_code=True)` where lemart_hf is not installed. With no model named,
    `pipeline("image-harmonization")` loads the packaged default (`lemart_hf.default_model`), offline.
    """
    if PIPELINE_REGISTRY.supported_tasks.get("image-harmonization", {}).get("impl") is ImageHarmonizationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        "image-harmonization",
        pipeline_class=ImageHarmonizationPipeline,
        pt_model=AutoModelForImageToImage,
        default={"model": (str(DEFAULT_MODEL_DIR), None)},
        type="image",
    )
