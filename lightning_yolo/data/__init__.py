"""Datasets: YOLOv5 dataset yamls, verified labels and images, augmentation and the Lightning data module.

The names below are imported lazily on first access, so ``import lightning_yolo.data.transforms`` (or any other
submodule) does not pull in Lightning or albumentations.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetConfig": "config",
    "DatasetError": "config",
    "image_to_label_path": "config",
    "list_image_files": "config",
    "list_images": "config",
    "load_dataset_config": "config",
    "YOLODataModule": "datamodule",
    "resolve_data": "datamodule",
    "AugmentSettings": "dataset",
    "BatchView": "dataset",
    "YOLODataset": "dataset",
    "collate": "dataset",
    "ImageCheck": "images",
    "load_image_bgr": "images",
    "verify_image": "images",
    "LabelError": "labels",
    "LabelTable": "label_table",
    "ParsedLabels": "labels",
    "parse_label_file": "labels",
    "parse_label_text": "labels",
    "EpochSampler": "samplers",
    "RectBatchSampler": "samplers",
    "rect_batches": "samplers",
    "ScanResult": "scan",
    "ScanSummary": "scan",
    "scan_split": "scan",
    "ensure_synthetic_dataset": "synthetic",
    "generate_synthetic_dataset": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
