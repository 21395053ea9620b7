"""Inference on images, folders, glob patterns, ``.txt`` lists, videos, webcams and network streams
(``python -m lightning_yolo predict``)."""

from lightning_yolo.models.tta import augmented_forward
from lightning_yolo.predict.predictor import Detector, Predictor, PredictSettings, load_detector
from lightning_yolo.predict.run import main
from lightning_yolo.predict.sources import Frame, FrameReader, SourceError, resolve_sources
from lightning_yolo.predict.streams import StreamReader, is_stream

__all__ = [
    "Detector",
    "Frame",
    "FrameReader",
    "PredictSettings",
    "Predictor",
    "SourceError",
    "StreamReader",
    "augmented_forward",
    "is_stream",
    "load_detector",
    "main",
    "resolve_sources",
]
