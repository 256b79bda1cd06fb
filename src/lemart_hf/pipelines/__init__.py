"""transformers pipelines of lemart_hf: "image-harmonization" (registered on `import lemart_hf`)."""

from .image_harmonization import ImageHarmonizationPipeline

__all__ = ["ImageHarmonizationPipeline"]
