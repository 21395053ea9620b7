"""Detection models: YOLOv5 v7.0 architectures built from YAML (torch + torchvision only, no training code)."""

from lightning_yolo.models.blocks import C3, SPP, SPPF, Bottleneck, Concat, Conv, Focus
from lightning_yolo.models.head import Detect
from lightning_yolo.models.yolo import DetectionModel, available_configs, load_config

__all__ = [
    "C3",
    "SPP",
    "SPPF",
    "Bottleneck",
    "Concat",
    "Conv",
    "Detect",
    "DetectionModel",
    "Focus",
    "available_configs",
    "load_config",
]
