"""lightning_yolo: YOLOv5 object-detector training on PyTorch Lightning."""

__version__ = "0.1.0"
