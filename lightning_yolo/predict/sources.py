"""Prediction sources: an image, a video, a folder, a glob pattern or a ``.txt`` list, read frame by frame.

Images are decoded to BGR uint8 with their EXIF orientation applied; videos are read with OpenCV. A source that
does not exist, or that names no image or video at all, is a :class:`SourceError` naming the path. A file that
exists but cannot be used is skipped with a warning and counted in :attr:`FrameReader.skipped`, so one bad
picture in a folder of thousands does not stop the run. Every image is first checked the way the training scan
checks it (:func:`~lightning_yolo.data.images.verify_image`: its header before any decoding), so a decompression
bomb (a small file declaring a huge picture) is refused in milliseconds instead of being decoded into gigabytes.
Webcams and network streams are read by :mod:`lightning_yolo.predict.streams`.
"""

from __future__ import annotations

import glob
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lightning_yolo.data.config import IMG_FORMATS, DatasetError
from lightning_yolo.data.images import load_image_bgr, verify_image

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

    Video frames are numbered by their position in the video; with ``vid_stride`` n only frames n, 2n, 3n, ...
    are read (YOLOv5's ``--vid-stride``), and their frame rate is the video's divided by n.

    Attributes:
        paths: the files, as given.
        vid_stride: keep every n-th video frame.
        skipped: ``(path, reason)`` for each file that could not be read.
    """

    def __init__(self, paths: list[Path], vid_stride: int = 1) -> None:
        if vid_stride < 1:
            raise ValueError(f"vid_stride {vid_stride} must be at least 1")
        self.paths = list(paths)
        self.vid_stride = vid_stride
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
        with warnings.catch_warnings():  # PIL warns about pictures near its limit; our message says enough
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            check = verify_image(path)  # the header first: a decompression bomb is never decoded
        if check.error:
            self._skip(path, check.error)
            return None
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
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) / self.vid_stride
            number, kept = 0, 0
            while capture.grab():  # grab() skips decoding the frames vid_stride leaves out
                number += 1
                if number % self.vid_stride:
                    continue
                ok, image = capture.retrieve()
                if not ok:
                    break
                kept += 1
                yield Frame(path, image, number, frames, fps)
            if number == 0:
                self._skip(path, "the video has no readable frames")
            elif kept == 0:
                self._skip(path, f"the video has {number} frames, fewer than the frame stride {self.vid_stride}")
        finally:
            capture.release()
