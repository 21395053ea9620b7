"""Prediction sources: an image, a video, a folder, a glob pattern or a ``.txt`` list, read frame by frame.

Images are decoded to BGR uint8 with their EXIF orientation applied; videos are read with OpenCV. A source that
does not exist, or that names no image or video at all, is a :class:`SourceError` naming the path. A file that
exists but cannot be decoded is skipped with a warning and counted in :attr:`FrameReader.skipped`, so one bad
picture in a folder of thousands does not stop the run.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lightning_yolo.data.config import IMG_FORMATS, DatasetError
from lightning_yolo.data.images import load_image_bgr

__all__ = ["VID_FORMATS", "Frame", "FrameReader", "SourceError", "is_image", "is_video", "resolve_sources"]

LOGGER = logging.getLogger("lightning_yolo")

VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")
"""Video file suffixes read with OpenCV (those YOLOv5 accepts)."""

_GLOB_CHARS = frozenset("*?[")


class SourceError(Exception):
    """A prediction source cannot be used: missing, empty, or a list file naming a missing file."""


@dataclass
class Frame:
    """One picture to predict on.

    Attributes:
        path: the image or video file it came from.
        image: ``(H, W, 3)`` uint8 BGR pixels.
        frame: 1-based frame number within a video; 0 for a still image.
        frames: frames the video reports (0 for a still image or when unknown).
        fps: the video's frame rate (0.0 for a still image).
    """

    path: Path
    image: np.ndarray
    frame: int = 0
    frames: int = 0
    fps: float = 0.0

    @property
    def is_video(self) -> bool:
        """True for a video frame."""
        return self.frame > 0


def _suffix(path: str | Path) -> str:
    return Path(path).suffix[1:].lower()


def is_image(path: str | Path) -> bool:
    """True when the file name ends in an image suffix of :data:`IMG_FORMATS`."""
    return _suffix(path) in IMG_FORMATS


def is_video(path: str | Path) -> bool:
    """True when the file name ends in a video suffix of :data:`VID_FORMATS`."""
    return _suffix(path) in VID_FORMATS


def _usable(path: Path) -> bool:
    return path.is_file() and (is_image(path) or is_video(path))


def _from_list_file(list_file: Path) -> list[Path]:
    """Entries of a ``.txt`` list, one path per line; relative paths are taken from the list file's folder."""
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{list_file}: cannot read the list file: {err}") from None
    paths = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry:
            continue
        path = Path(entry) if Path(entry).is_absolute() else list_file.parent / entry
        if not path.exists():
            raise SourceError(f"{list_file}:{number}: '{entry}' does not exist")
        if not (is_image(path) or is_video(path)):
            raise SourceError(f"{list_file}:{number}: '{entry}' is not an image or video file")
        paths.append(path)
    return paths


def resolve_sources(source: str | Path) -> list[Path]:
    """The image and video files a source names, in a stable order.

    Args:
        source: an image or video file; a folder (its image and video files, not recursive, sorted); a glob
            pattern (``**`` recurses); or a ``.txt`` file listing one image or video per line.

    Raises:
        SourceError: the path does not exist, matches nothing, holds no image or video, or is of an unsupported
            kind; the message names it.
    """
    text = str(source)
    path = Path(text)
    if path.is_file() and path.suffix.lower() == ".txt":
        paths = _from_list_file(path)
    elif path.is_file():
        if not (is_image(path) or is_video(path)):
            raise SourceError(f"{path}: not an image or video file (suffix '{path.suffix}')")
        paths = [path]
    elif path.is_dir():
        paths = sorted(p for p in path.iterdir() if _usable(p))
    elif _GLOB_CHARS & set(text):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if _usable(Path(p)))
    else:
        raise SourceError(f"{path}: no such file or folder")
    if not paths:
        formats = ", ".join(IMG_FORMATS + VID_FORMATS)
        raise SourceError(f"{text}: no images or videos found (formats: {formats})")
    return paths


class FrameReader:
    """Iterate over every frame of a list of image and video files, skipping (and counting) unreadable ones.

    Attributes:
        paths: the files, as given.
        skipped: ``(path, reason)`` for each file that could not be read.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)
        self.skipped: list[tuple[Path, str]] = []

    def __iter__(self) -> Iterator[Frame]:
        for path in self.paths:
            if is_video(path):
                yield from self._video(path)
            else:
                frame = self._image(path)
                if frame is not None:
                    yield frame

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append((path, reason))
        LOGGER.warning("%s: skipped, %s", path, reason)

    def _image(self, path: Path) -> Frame | None:
        try:
            return Frame(path, load_image_bgr(path))
        except DatasetError as err:
            self._skip(path, str(err).removeprefix(f"{path}: "))
            return None

    def _video(self, path: Path) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                self._skip(path, "cannot open the video")
                return
            frames = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            number = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                number += 1
                yield Frame(path, image, number, frames, fps)
            if number == 0:
                self._skip(path, "the video has no readable frames")
        finally:
            capture.release()
