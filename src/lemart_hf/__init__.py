"""lemart_hf: LEMaRT pre-training and the SwinIH harmonization model for the Hugging Face ecosystem.

Importing the package registers its models with the transformers Auto classes and the "image-harmonization" task
with transformers' `pipeline()`.
"""

from .evaluation import evaluate_harmonization
from .metrics import HARMONIZATION_METRIC
from .models.architectures import ARCHITECTURES
from .models.configuration_harmonization import HarmonizationConfig
from .models.harmony_transformer import HarmonyTransformerConfig, HarmonyTransformerForHarmonization
from .models.hrnet import HRNetIHConfig, HRNetIHForHarmonization
from .models.modeling_harmonization import HarmonizationOutput
from .models.resnet_generator import ResNetGeneratorConfig, ResNetGeneratorForHarmonization
from .models.swinih import (
    SWINIH_PRESETS,
    SwinIHConfig,
    SwinIHForHarmonization,
    SwinIHImageProcessor,
    SwinIHModel,
    SwinIHPreTrainedModel,
)
from .models.vit import ViTIHConfig, ViTIHForHarmonization
from .pipelines import ImageHarmonizationPipeline
from .registration import register_auto_classes, register_pipelines

__version__ = "0.1.0"

register_auto_classes()
register_pipelines()

__all__ = [
    "ARCHITECTURES",
    "HARMONIZATION_METRIC",
    "HRNetIHConfig",
    "HRNetIHForHarmonization",
    "HarmonizationConfig",
    "HarmonizationOutput",
    "HarmonyTransformerConfig",
    "HarmonyTransformerForHarmonization",
    "ImageHarmonizationPipeline",
    "ResNetGeneratorConfig",
    "ResNetGeneratorForHarmonization",
    "SWINIH_PRESETS",
    "SwinIHConfig",
    "SwinIHForHarmonization",
    "SwinIHImageProcessor",
    "SwinIHModel",
    "SwinIHPreTrainedModel",
    "ViTIHConfig",
    "ViTIHForHarmonization",
    "evaluate_harmonization",
]
