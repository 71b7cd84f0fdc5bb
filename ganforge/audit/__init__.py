"""What a model generates, measured against what it was trained on: an attribute classifier
labels generated images, and their attribute distribution is compared with the training data's
(shares, total variation distance, chi-square test, dropped values, per prompt group)."""

from ganforge.audit.classifier import (
    AttributeClassifier,
    ClassifierReport,
    load_classifier,
    save_classifier,
    train_attribute_classifier,
)
from ganforge.audit.compare import ChiSquare, Comparison, compare, tv_distance
from ganforge.audit.run import AuditResult, ImageToImageModel, TextToImageModel, run_audit

__all__ = [
    "AttributeClassifier",
    "AuditResult",
    "ChiSquare",
    "ClassifierReport",
    "Comparison",
    "ImageToImageModel",
    "TextToImageModel",
    "compare",
    "load_classifier",
    "run_audit",
    "save_classifier",
    "train_attribute_classifier",
    "tv_distance",
]
