"""Inference pipelines with save_pretrained / from_pretrained."""

from ganforge.pipelines.base import Pipeline
from ganforge.pipelines.image_to_image import DEFAULT_TRANSLATOR, ImageToImagePipeline
from ganforge.pipelines.text_to_image import DEFAULT_MODEL, TextToImagePipeline
from ganforge.pipelines.upscale import DEFAULT_UPSCALER, UpscalePipeline

__all__ = ["DEFAULT_MODEL", "DEFAULT_TRANSLATOR", "DEFAULT_UPSCALER", "ImageToImagePipeline",
           "Pipeline", "TextToImagePipeline", "UpscalePipeline"]
