"""Small helpers shared by the predict tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def frame_count(path: Path) -> int:
    """Frames OpenCV reads from a video file."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def write_video(path: Path, frames: int = 5, size: tuple[int, int] = (96, 64)) -> Path:
    """An MJPG .avi of ``frames`` frames of ``size`` (width, height), each frame different (a moving square)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.rectangle(frame, (2 + 5 * i, 10), (30 + 5 * i, 50), (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path
