"""Live and network sources: a webcam index (``--source 0``) or an ``rtsp://``, ``rtmp://``, ``http://`` or
``https://`` URL, read with OpenCV's ``cv2.VideoCapture`` (FFmpeg for URLs, with open and read timeouts).

A source that cannot be opened is a :class:`~lightning_yolo.predict.sources.SourceError` at once. A read that fails
mid-stream reconnects: up to ``retries`` times in a row, each after a pause that doubles from ``backoff_s``; a
video file served over the network is reopened at the frame where it stopped. When no reconnect gives a frame the
stream is gone: a ``SourceError`` naming it and counting the frames read.

A source that reports a frame count (a video file behind a URL) ends after that many frames; one that reports none
(webcams, cameras, live streams) runs until it is gone or the run is interrupted. Frames are read in order and none
are dropped, so when inference is slower than the stream, ``vid_stride`` keeps every n-th frame only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

import cv2

from lightning_yolo.predict.sources import Frame, SourceError, is_image

__all__ = ["STREAM_SCHEMES", "StreamReader", "is_stream", "open_capture", "stream_label", "stream_name"]

LOGGER = logging.getLogger("lightning_yolo")

STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
"""URL prefixes read as streams (YOLOv5's)."""
RETRIES = 3
"""Reconnects tried in a row after a failed read before the stream counts as gone."""
BACKOFF_S = 0.5
"""Pause before the first reconnect, doubled before each further one (0.5 s, 1 s, 2 s)."""
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 10_000  # FFmpeg's waits for a silent server, so a dead camera fails instead of hanging
DEFAULT_FPS = 30.0  # for streams that report no frame rate (YOLOv5's fallback)
_CAMERA_FAILURE = "the camera (no such device, or it is busy)"
_STREAM_FAILURE = "the stream (not found, refused or timed out)"


def is_stream(source: str) -> bool:
    """True for a webcam index (``0``) or a URL of :data:`STREAM_SCHEMES`."""
    return source.isdigit() or source.lower().startswith(STREAM_SCHEMES)


def stream_name(source: str) -> str:
    """The file name outputs of a stream are named after: the webcam index, else the URL's last path part (or its
    host), with characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``."""
    if source.isdigit():
        return source
    parts = urlsplit(source)
    name = PurePosixPath(parts.path).name or parts.hostname or "stream"
    return re.sub(r"[^\w.-]", "_", name)


def stream_label(source: str) -> str:
    """How messages name a stream: ``webcam 0``, or the URL with any password replaced by ``***``."""
    if source.isdigit():
        return f"webcam {source}"
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextmanager
def _opencv_errors_only() -> Iterator[None]:
    """Silence OpenCV's own warnings (e.g. ``can't open camera by index``): the caller reports failures itself."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_capture(source: str) -> cv2.VideoCapture:
    """A ``cv2.VideoCapture`` of a webcam index or a URL (FFmpeg, with timeouts); it may be unopened."""
    with _opencv_errors_only():
        if source.isdigit():
            return cv2.VideoCapture(int(source))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class StreamReader:
    """Iterate over the frames of one webcam or network stream, reconnecting when a read fails.

    The stream is opened when the reader is made, so a bad source fails before a model is loaded. Frames are
    numbered from 1 by their position in the stream (with ``vid_stride`` 3: 3, 6, 9, ...); a URL naming a picture
    gives one still frame (number 0).

    Attributes:
        source: the webcam index or URL, as given.
        path: ``Path(stream_name(source))``, the name its outputs get.
        frames: the frame count the source reports, 0 when it reports none (a live stream).
        fps: the frame rate of the frames kept (the source's divided by ``vid_stride``).
        retries: reconnects tried in a row before the stream counts as gone (default :data:`RETRIES`).
        backoff_s: pause before the first of them, doubled for each further one (default :data:`BACKOFF_S`).
        reconnects: reconnects tried so far.
        skipped: always empty (the interface of :class:`~lightning_yolo.predict.sources.FrameReader`).

    Raises:
        SourceError: the source cannot be opened (when made), or is gone mid-stream (while iterating).
    """

    def __init__(
        self,
        source: str,
        vid_stride: int = 1,
        retries: int | None = None,
        backoff_s: float | None = None,
        opener: Callable[[str], cv2.VideoCapture] = open_capture,
    ) -> None:
        if vid_stride < 1:
            raise ValueError(f"vid_stride {vid_stride} must be at least 1")
        self.source, self.vid_stride = source, vid_stride
        self.retries = RETRIES if retries is None else retries
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.path = Path(stream_name(source))
        self.label = stream_label(source)
        self.skipped: list[tuple[Path, str]] = []
        self.reconnects = 0
        self._opener = opener
        self._capture = opener(source)
        if not self._capture.isOpened():
            self._capture.release()
            why = _CAMERA_FAILURE if source.isdigit() else _STREAM_FAILURE
            raise SourceError(f"{self.label}: cannot open {why}")
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frames = int(count) if 0 < count < 1e12 and not source.isdigit() else 0
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = (fps if 0 < fps < 1000 else DEFAULT_FPS) / vid_stride
        self._still = not source.isdigit() and is_image(urlsplit(source).path)

    def __iter__(self) -> Iterator[Frame]:
        capture, self._capture = self._capture, None
        if capture is None:
            raise SourceError(f"{self.label}: a stream can be read only once")
        try:
            if self._still:
                yield self._still_frame(capture)
                return
            yield from self._frames(capture)
        finally:
            capture.release()

    def close(self) -> None:
        """Release the stream when it was opened but never read (reading releases it when done)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _still_frame(self, capture: cv2.VideoCapture) -> Frame:
        ok, image = capture.read()
        if not ok:
            raise SourceError(f"{self.label}: cannot read the picture")
        return Frame(self.path, image)

    def _frames(self, capture: cv2.VideoCapture) -> Iterator[Frame]:
        """Frames every ``vid_stride``-th position, reconnecting after failed reads (which replaces ``capture``)."""
        position, failures = 0, 0
        try:
            while True:
                if capture.grab():
                    position, failures = position + 1, 0
                    if position % self.vid_stride == 0:
                        ok, image = capture.retrieve()
                        if ok:
                            yield Frame(self.path, image, position, self.frames, self.fps)
                        else:
                            LOGGER.warning("%s: frame %d cannot be decoded, skipped", self.label, position)
                    continue
                if self._ended(capture, position, failures):
                    return
                failures += 1
                if failures > self.retries:
                    raise SourceError(
                        f"{self.label}: the stream is gone after {position} frames ({self.retries} reconnects failed)"
                    )
                capture.release()
                capture = self._reconnect(position, failures)
        finally:
            capture.release()  # the latest capture; earlier ones were released before each reconnect

    def _ended(self, capture: cv2.VideoCapture, position: int, failures: int) -> bool:
        """Whether a failed read is the end of a source with a frame count (not a lost connection)."""
        if not self.frames:
            return False
        if position >= self.frames:
            return True
        if failures and capture.isOpened():  # reopened fine, yet nothing at this position: the count was too high
            LOGGER.warning("%s: ended at frame %d of the %d it reported", self.label, position, self.frames)
            return True
        return False

    def _reconnect(self, position: int, attempt: int) -> cv2.VideoCapture:
        """A new capture after a pause, at ``position`` when the source has a frame count (it may be unopened)."""
        LOGGER.warning(
            "%s: read failed after frame %d, reconnecting (%d/%d)", self.label, position, attempt, self.retries
        )
        time.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.reconnects += 1
        capture = self._opener(self.source)
        if capture.isOpened() and self.frames and position:
            capture.set(cv2.CAP_PROP_POS_FRAMES, position)
        return capture
