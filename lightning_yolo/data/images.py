"""Image files: verify them during the dataset scan and decode them to 3-channel uint8 BGR arrays.

Files are only ever read. A JPEG whose last bytes are not the end-of-image marker but which decodes in full (for
example one with bytes appended after the marker) is repaired in memory each time it is read; YOLOv5 instead
re-saves such files in place, which lightning_yolo never does.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lightning_yolo.data.config import IMG_FORMATS, DatasetError
from lightning_yolo.data.jpeg_header import plain_jpeg_size

MAX_IMAGE_PIXELS = 89_478_485
"""Images with more pixels than this (PIL's default limit, about 9459 x 9459) are rejected as decompression bombs."""

MIN_IMAGE_SIDE = 10
"""Images with a side shorter than this many pixels are rejected."""

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_JPEG_HEADER_BYTES = 1 << 16  # read for the header; a JPEG header over this size is read by PIL instead
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_PIL_DIRECT_MODES = {"L", "RGB", "I", "I;16", "I;16B", "I;16L", "F"}  # PIL modes converted by value, not by PIL


class ImageCheck(NamedTuple):
    """Outcome of :func:`verify_image`.

    Attributes:
        shape: ``(height, width)`` after EXIF orientation, or None when the image is unusable.
        error: Why the image is unusable (empty when usable).
        warning: A non-fatal finding such as an in-memory JPEG repair (empty when none).
    """

    shape: tuple[int, int] | None
    error: str = ""
    warning: str = ""


def verify_image(path: str | Path) -> ImageCheck:
    """Check that a file is a usable image without decoding it in full (except JPEGs that need repair).

    Detects: zero-byte files, files that are not images (e.g. text named ``.jpg``), formats outside
    :data:`IMG_FORMATS`, decompression bombs (over :data:`MAX_IMAGE_PIXELS`), images under
    :data:`MIN_IMAGE_SIDE` px, structurally corrupt files (PIL ``verify``) and truncated JPEGs.
    """
    path = os.fspath(path)  # a string: no pathlib parsing per image in a 100,000-image scan
    try:
        if os.stat(path).st_size == 0:
            return ImageCheck(None, "empty file (0 bytes)")
        return _verify_with_pil(path)
    except Image.DecompressionBombError as err:
        return ImageCheck(None, f"decompression bomb: {err}")
    except UnidentifiedImageError:
        return _verify_without_pil(path)
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds of errors for broken files; all mean "corrupt"
        return ImageCheck(None, f"corrupt image: {type(err).__name__}: {err}")


def _verify_with_pil(path: str) -> ImageCheck:
    """One open of the file: the header is read (by :func:`plain_jpeg_size`, else PIL), then a JPEG's end."""
    with open(path, "rb") as f:
        size = plain_jpeg_size(f.read(_JPEG_HEADER_BYTES), MAX_IMAGE_PIXELS)
        if size is not None:
            return _check_jpeg(path, f, size)
        f.seek(0)
        return _verify_open_file(path, f)


def _check_jpeg(path: str, f: io.BufferedReader, size: tuple[int, int]) -> ImageCheck:
    """A plain JPEG's size problem, or its end marker check (EXIF orientation 1: no EXIF)."""
    problem = _size_problem(*size)
    if problem:
        return ImageCheck(None, problem)
    shape = (size[1], size[0])
    return ImageCheck(shape) if _ends_with_eoi(f) else _check_truncated_jpeg(path, shape)


def _verify_open_file(path: str, f: io.BufferedReader) -> ImageCheck:
    """PIL reads the header of the open file (and its EXIF orientation), verifies it, then a JPEG's end is checked."""
    with Image.open(f) as im:
        fmt, (w, h) = (im.format or "").lower(), im.size
        problem = _size_problem(w, h) or ("" if fmt in IMG_FORMATS else f"unsupported image format {fmt.upper()}")
        if problem:
            return ImageCheck(None, problem)
        jpeg = fmt in ("jpeg", "mpo")
        orientation = _orientation(im) if jpeg else 1  # a JPEG's EXIF was read with its header: no file access
        im.verify()  # before any other format's EXIF: PIL reads some of those from the stream verify() checks
        if not jpeg:
            f.seek(0)
            with Image.open(f) as again:
                orientation = _orientation(again)
        shape = (w, h) if orientation in _TRANSPOSED else (h, w)
        if jpeg and not _ends_with_eoi(f):
            return _check_truncated_jpeg(path, shape)
    return ImageCheck(shape)


def _ends_with_eoi(f: io.BufferedReader) -> bool:
    f.seek(-2, io.SEEK_END)
    return f.read(2) == _JPEG_EOI


def _verify_without_pil(path: str) -> ImageCheck:
    """Formats PIL cannot identify (PFM) are checked by decoding them with OpenCV."""
    if os.path.splitext(path)[1].lower() == ".pfm":
        try:
            h, w = load_image_bgr(path).shape[:2]
        except DatasetError:
            return ImageCheck(None, "corrupt PFM image")
        return ImageCheck(None, _size_problem(w, h)) if _size_problem(w, h) else ImageCheck((h, w))
    return ImageCheck(None, "not an image, or an unsupported image format")


def _size_problem(w: int, h: int) -> str:
    if w * h > MAX_IMAGE_PIXELS:
        return f"decompression bomb: {w}x{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels"
    if min(w, h) < MIN_IMAGE_SIDE:
        return f"image size {w}x{h} is under {MIN_IMAGE_SIDE} pixels"
    return ""


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF blocks raise many kinds of errors; treat them as "no orientation"
        return 1


def _check_truncated_jpeg(path: str, shape: tuple[int, int]) -> ImageCheck:
    """A JPEG not ending in the end-of-image marker is truncated unless it decodes in full."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # noqa: BLE001 - any decoding failure here means the data ends too early
        return ImageCheck(None, f"truncated JPEG: {err}")
    return ImageCheck(shape, warning="JPEG has bytes after its end marker; repaired in memory, file left unchanged")


def repair_jpeg_bytes(data: bytes) -> bytes:
    """Cut a JPEG after its last end-of-image marker (or add one), so decoders read it without complaint."""
    if not data.startswith(_JPEG_SOI) or data.endswith(_JPEG_EOI):
        return data
    end = data.rfind(_JPEG_EOI)
    return data[: end + 2] if end > 0 else data + _JPEG_EOI


_JPEG_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(long_side: int, target: int) -> int:
    """The largest JPEG decoding scale divisor (1, 2, 4 or 8) that still leaves a long side of ``target`` px."""
    return next((f for f in (8, 4, 2) if long_side >= f * target), 1)


def load_image_bgr(path: str | Path, reduction: int = 1) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 BGR with its EXIF orientation applied.

    Greyscale, palette, RGBA (alpha dropped), 16-bit, float (PFM/TIFF) and CMYK images are converted.
    JPEGs needing repair are repaired in memory; the file is never written.

    Args:
        path: The image file.
        reduction: 2, 4 or 8 decodes a JPEG at that fraction of its size, in libjpeg's DCT domain (the inverse
            DCT and colour conversion shrink with the output; entropy decoding does not), giving an area-like
            average rather than a resampling. Other formats ignore it and decode in full.

    Raises:
        DatasetError: the file is missing or cannot be decoded (the message names it).
    """
    try:
        data = repair_jpeg_bytes(Path(path).read_bytes())
    except OSError as err:
        raise DatasetError(f"{path}: cannot read image: {err.strerror or err}") from None
    buffer = np.frombuffer(data, dtype=np.uint8)
    flags = _JPEG_REDUCED.get(reduction, cv2.IMREAD_COLOR) if data.startswith(_JPEG_SOI) else cv2.IMREAD_COLOR
    image = _cv2_decode(buffer, flags)  # applies EXIF orientation
    if image is not None and not str(path).lower().endswith(".pfm"):
        return image
    image = _cv2_decode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is not None and image.dtype.kind == "f":
        return _float_to_bgr(image)
    return _decode_with_pil(data, path)


def _cv2_decode(buffer: np.ndarray, flags: int) -> np.ndarray | None:
    """``cv2.imdecode`` that returns None instead of raising (OpenCV raises for some malformed headers)."""
    if not buffer.size:
        return None
    try:
        return cv2.imdecode(buffer, flags)
    except cv2.error:
        return None


def _float_to_bgr(image: np.ndarray) -> np.ndarray:
    """Float images hold either [0, 1] or [0, 255] values; scale to uint8 accordingly."""
    scale = 255.0 if np.nanmax(image, initial=0.0) <= 1.0 else 1.0
    image = np.clip(np.nan_to_num(image) * scale, 0, 255).astype(np.uint8)
    return to_three_channels(image)


def _decode_with_pil(data: bytes, path: str | Path) -> np.ndarray:
    """PIL fallback for what OpenCV cannot decode (e.g. 32-bit float TIFF)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in _PIL_DIRECT_MODES:
                im = im.convert("RGB")  # CMYK, palette, alpha, YCbCr, ...
            array = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - whatever PIL raises, the image cannot be decoded
        raise DatasetError(f"{path}: cannot decode image: {err}") from None
    if array.dtype.kind == "f":
        return _float_to_bgr(array)
    if array.dtype != np.uint8:
        array = (array.astype(np.float64) / max(np.iinfo(array.dtype).max, 1) * 255).astype(np.uint8)
    return to_three_channels(array)[..., ::-1].copy() if array.ndim == 3 else to_three_channels(array)


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> ``(H, W, 3)`` (alpha dropped)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])
