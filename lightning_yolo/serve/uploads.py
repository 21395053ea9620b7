"""Uploaded image bytes to the BGR picture ``predict`` would have read from the same file.

The checks and the decoding are the ones ``predict`` applies to a file (:func:`~lightning_yolo.data.images.
verify_image` on the header first, so a decompression bomb is refused before it is decoded, then
:func:`~lightning_yolo.data.images.load_image_bgr`), run on an in-memory file holding the upload: the pixels, and
so the detections, are the same as ``predict``'s. Nothing is written to disk where the system has in-memory files
(Linux); elsewhere a temporary file is used and removed at once.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from lightning_yolo.data.config import DatasetError
from lightning_yolo.data.images import load_image_bgr, verify_image
from lightning_yolo.serve.payload import PayloadError

__all__ = ["decode_upload"]


@contextmanager
def _as_file(data: bytes) -> Iterator[Path]:
    """A path whose file holds ``data``, for functions that read image files."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("upload")
        try:
            with open(fd, "wb", closefd=False) as f:  # a buffered write writes it all
                f.write(data)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        yield path


def decode_upload(data: bytes) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 BGR picture in an uploaded image file, EXIF orientation applied.

    Raises:
        PayloadError: 422 when the bytes are not a usable picture (not an image, an unsupported format, a
            truncated JPEG, a decompression bomb, a side under 10 pixels), with the reason.
    """
    with _as_file(data) as path:
        with warnings.catch_warnings():  # PIL warns about pictures near its limit; the refusal says enough
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            check = verify_image(path)
        if check.error:
            raise PayloadError(422, f"not a usable image: {check.error}")
        try:
            return load_image_bgr(path)
        except DatasetError as err:
            raise PayloadError(422, f"not a usable image: {str(err).removeprefix(f'{path}: ')}") from None
