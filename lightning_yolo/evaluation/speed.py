"""YOLOv5 val.py's speed line: time per image of pre-processing, inference and NMS over one evaluation.

``Speed: 0.4ms pre-process, 21.3ms inference, 1.2ms NMS per image at shape (32, 3, 640, 640)``. With it,
``validate`` also covers YOLOv5's ``val.py --task speed``. On CUDA each stage waits for the device before and after
(as YOLOv5's ``Profile``), so the times are the device's, not the launch's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["STAGES", "StageTimes"]

STAGES = ("pre-process", "inference", "NMS")
"""The stages timed, in order."""


class StageTimes:
    """Seconds spent in each stage of an evaluation, the images seen and the largest input shape."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new evaluation."""
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.images = 0
        self.shape = (0, 3, 0, 0)

    @contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` body to stage ``name``."""
        sync = device.type == "cuda"
        if sync:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(device)
            self.seconds[name] += time.perf_counter() - start

    def count(self, shape: torch.Size | tuple[int, ...]) -> None:
        """Record a batch of input shape ``(B, 3, H, W)``; the line reports the largest of each dimension."""
        self.images += int(shape[0])
        self.shape = tuple(max(a, int(b)) for a, b in zip(self.shape, shape, strict=True))  # type: ignore[assignment]

    def per_image_ms(self) -> tuple[float, float, float]:
        """Milliseconds per image of each stage (zeros before any image)."""
        n = max(self.images, 1)
        return tuple(self.seconds[s] * 1e3 / n for s in STAGES)  # type: ignore[return-value]

    def line(self, imgsz: int | None = None) -> str:
        """YOLOv5's speed line; with ``imgsz`` the shape is YOLOv5's nominal ``(B, 3, imgsz, imgsz)`` (rect batches
        are at most that plus the padding), else the largest batch dimensions seen."""
        pre, inference, nms = self.per_image_ms()
        shape = self.shape if imgsz is None else (self.shape[0], 3, imgsz, imgsz)
        return (
            f"Speed: {pre:.1f}ms pre-process, {inference:.1f}ms inference, {nms:.1f}ms NMS per image at shape {shape}"
        )
