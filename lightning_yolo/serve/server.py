"""The LitServe server for a detection model: the API, its workers and the upload gate in front of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_yolo.predict.predictor import PredictSettings

__all__ = ["API_PATH", "build_server"]

API_PATH = "/predict"
"""The detection route (LitServe's default)."""


def build_server(
    weights: str | Path,
    settings: PredictSettings,
    *,
    accelerator: str = "cpu",
    max_batch_size: int = 8,
    batch_timeout: float = 0.01,
    workers_per_device: int = 1,
    max_image_bytes: int = 20 * 2**20,
    timeout: float = 30.0,
    threads: int = 0,
) -> Any:
    """A ``litserve.LitServer`` answering ``POST /predict`` with detections and ``GET /health``.

    Args:
        weights: the model file; each inference worker loads it.
        settings: inference settings.
        accelerator: ``cpu`` or ``cuda`` (every visible GPU; ``CUDA_VISIBLE_DEVICES`` chooses them).
        max_batch_size: most concurrent requests run in one forward pass.
        batch_timeout: seconds a worker waits for a batch to fill.
        workers_per_device: inference processes per device, each with its own copy of the model.
        max_image_bytes: the largest image file accepted (413 above it).
        timeout: seconds a request may wait for its answer (504 after it).
        threads: CPU threads of each worker's torch (0: torch's default).
    """
    import litserve as ls

    from lightning_yolo.serve.api import DetectionAPI
    from lightning_yolo.serve.gate import UploadGate

    api = DetectionAPI(weights, settings, max_batch_size, batch_timeout, api_path=API_PATH, threads=threads)
    gate = (UploadGate, {"path": API_PATH, "max_image_bytes": max_image_bytes})
    return ls.LitServer(
        api,
        accelerator=accelerator,
        workers_per_device=workers_per_device,
        timeout=timeout,
        middlewares=[gate],
        model_metadata={"weights": Path(weights).name, "imgsz": settings.imgsz},
    )
