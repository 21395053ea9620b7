"""Inference on images, folders, glob patterns, ``.txt`` lists and videos (``python -m lightning_yolo predict``)."""

from lightning_yolo.predict.predictor import Detector, Predictor, PredictSettings, augmented_forward, load_detector
from lightning_yolo.predict.run import main
from lightning_yolo.predict.sources import Frame, FrameReader, SourceError, resolve_sources

__all__ = [
    "Detector",
    "Frame",
    "FrameReader",
    "PredictSettings",
    "Predictor",
    "SourceError",
    "augmented_forward",
    "load_detector",
    "main",
    "resolve_sources",
]
