"""What a model generates, measured against what it was trained on: an attribute classifier
labels generated images, and their attribute distribution is compared with the training data's
(shares, total variation distance, chi-square test, dropped values, per prompt group)."""

from ganforge.audit.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierReport,
    train_attribute_classifier,
)
from ganforge.audit.compare import ChiSquare, Comparison, compare, tv_distance
from ganforge.audit.run import AuditResult, ImageTranslator, TextToImageSampler, run_audit

__all__ = [
    "AttributeClassifier",
    "AuditResult",
    "ChiSquare",
    "ClassifierConfig",
    "ClassifierReport",
    "Comparison",
    "ImageTranslator",
    "TextToImageSampler",
    "compare",
    "run_audit",
    "train_attribute_classifier",
    "tv_distance",
]
