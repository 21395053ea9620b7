"""Small helpers shared by the predict tests."""

from __future__ import annotations

from pathlib import Path

import cv2


def frame_count(path: Path) -> int:
    """Frames OpenCV reads from a video file."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
