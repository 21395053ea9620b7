"""The JPEG header shortcut of the image check: wherever it answers, the answer is PIL's."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_yolo.data import images
from lightning_yolo.data.jpeg_header import plain_jpeg_size


def _jpeg(mode: str = "RGB", size: tuple[int, int] = (40, 24), **save: object) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels[..., :3]).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _bad_dqt(data: bytes) -> bytes:
    """The first DQT segment's length cut by one byte: its table is incomplete."""
    at = data.index(b"\xff\xdb")
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    return (
        data[: at + 2] + (length - 1).to_bytes(2, "big") + data[at + 4 : at + 2 + length - 1] + data[at + 2 + length :]
    )


PLAIN = {  # the shortcut answers these
    "baseline": _jpeg(),
    "grey": _jpeg("L"),
    "progressive": _jpeg(progressive=True),
    "comment": _jpeg(comment=b"a comment"),
    "bytes after the end": _jpeg() + b"trailing",
    "truncated": _jpeg(size=(64, 64))[:-200],
    "tiny": _jpeg(size=(8, 30)),
}
OTHER = {  # PIL answers these
    "exif rotated": _jpeg(exif=_exif(6)),
    "exif upright": _jpeg(exif=_exif(1)),
    "cmyk": _jpeg("CMYK"),
    "icc profile": _jpeg(icc_profile=b"\0" * 128),
    "bad quantisation table": _bad_dqt(_jpeg()),
    "not a jpeg": b"GIF89a not really",
}


def _pil_only(path: Path, monkeypatch: pytest.MonkeyPatch) -> images.ImageCheck:
    with monkeypatch.context() as m:
        m.setattr(images, "plain_jpeg_size", lambda data, max_pixels: None)
        return images.verify_image(path)


@pytest.mark.parametrize("case", sorted(PLAIN) + sorted(OTHER))
def test_image_check_with_the_shortcut_equals_the_check_by_pil(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {**PLAIN, **OTHER}[case]
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    answered = plain_jpeg_size(data[: 1 << 16], images.MAX_IMAGE_PIXELS)
    assert (answered is not None) == (case in PLAIN)
    assert images.verify_image(path) == _pil_only(path, monkeypatch)


def test_shortcut_sizes_are_pils_and_rotated_images_are_left_to_pil(tmp_path: Path) -> None:
    for data in PLAIN.values():
        with Image.open(io.BytesIO(data)) as im:
            assert plain_jpeg_size(data, images.MAX_IMAGE_PIXELS) == im.size
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg(size=(40, 24), exif=_exif(6)))
    assert images.verify_image(path).shape == (40, 24)  # (h, w) after the EXIF rotation


def test_shortcut_leaves_oversized_headers_to_pil() -> None:
    data = _jpeg(size=(40, 24))
    assert plain_jpeg_size(data, max_pixels=40 * 24) == (40, 24)
    assert plain_jpeg_size(data, max_pixels=40 * 24 - 1) is None
    assert plain_jpeg_size(data[:20], images.MAX_IMAGE_PIXELS) is None  # header cut short
