"""Uploaded bytes decode to the pixels predict reads from the same file; unusable bytes are a 422 with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lightning_yolo.data.images import load_image_bgr
from lightning_yolo.serve.payload import PayloadError
from lightning_yolo.serve.uploads import decode_upload


def _jpeg(tmp_path: Path, exif_orientation: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    path = tmp_path / "picture.jpg"
    exif = Image.Exif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    picture.save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [None, 6])
def test_upload_decodes_like_the_file(tmp_path: Path, orientation: int | None) -> None:
    path = _jpeg(tmp_path, orientation)
    image = decode_upload(path.read_bytes())
    assert np.array_equal(image, load_image_bgr(path))
    assert image.shape == ((64, 48, 3) if orientation == 6 else (48, 64, 3))


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 9_000)).save(buffer, format="PNG")  # 90 M pixels in a few kB
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda jpeg: b"this is text, not a picture\n" * 20, "not an image"),
        (lambda jpeg: jpeg[: len(jpeg) // 2], "truncated JPEG"),
        (lambda jpeg: _bomb(), "decompression bomb"),
        (lambda jpeg: cv2.imencode(".png", np.zeros((5, 40, 3), np.uint8))[1].tobytes(), "under 10 pixels"),
    ],
)
def test_unusable_bytes_are_422(tmp_path: Path, make, words: str) -> None:  # noqa: ANN001
    with pytest.raises(PayloadError) as err:
        decode_upload(make(_jpeg(tmp_path).read_bytes()))
    assert err.value.status == 422 and words in err.value.detail
