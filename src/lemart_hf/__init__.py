"""lemart_hf: LEMaRT pre-training and the SwinIH harmonization model for the Hugging Face ecosystem.

Importing the package registers its models with the transformers Auto classes and the "image-harmonization" task
with transformers' `pipeline()`.
"""

from .evaluation import evaluate_harmonization
from .metrics import HARMONIZATION_METRIC
from .models.modeling_harmonization import HarmonizationOutput
from .models.swinih import (
    SWINIH_PRESETS,
    SwinIHConfig,
    SwinIHForHarmonization,
    SwinIHImageProcessor,
    SwinIHModel,
    SwinIHPreTrainedModel,
)
from .pipelines import ImageHarmonizationPipeline
from .registration import register_auto_classes, register_pipelines

__version__ = "0.1.0"

register_auto_classes()
register_pipelines()

__all__ = [
    "HARMONIZATION_METRIC",
    "HarmonizationOutput",
    "ImageHarmonizationPipeline",
    "SWINIH_PRESETS",
    "SwinIHConfig",
    "SwinIHForHarmonization",
    "SwinIHImageProcessor",
    "SwinIHModel",
    "SwinIHPreTrainedModel",
    "evaluate_harmonization",
]
