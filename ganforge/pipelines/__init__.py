"""Inference pipelines with save_pretrained / from_pretrained."""

from ganforge.pipelines.base import Pipeline, read_pipeline_config
from ganforge.pipelines.image_to_image import ImageToImagePipeline

__all__ = ["ImageToImagePipeline", "Pipeline", "read_pipeline_config"]
