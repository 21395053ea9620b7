"""The size of a plain JPEG read from its header bytes, for the label scan's image check (no PIL, no decoding).

PIL's JPEG reader parses every header segment in Python; on a scan of 100,000s of small images that is most of
the time spent per image. :func:`plain_jpeg_size` reads only what it needs, and only for headers it can judge
exactly as PIL would: SOI, then segments of the kinds below, each complete, then SOS.

- APP0 (a ``JFIF`` one at least 7 bytes long, as PIL reads its version), COM, DHT, DRI: skipped.
- DQT: every table complete (PIL rejects a short one).
- exactly one SOF0, SOF1 or SOF2 (baseline, extended, progressive) of 8-bit samples, 1 or 3 components, and a
  length PIL's component loop accepts.

Anything else returns None and the caller asks PIL: EXIF or XMP (orientation), ICC profiles, Adobe and other
APP segments, MPO, CMYK, fill bytes between segments, a header longer than the bytes given, any size over PIL's
decompression-bomb limit. So a size from here is the size PIL reports, with EXIF orientation 1.
"""

from __future__ import annotations

_SOI = b"\xff\xd8\xff"
_SOS, _DQT, _APP0 = 0xDA, 0xDB, 0xE0
_SOF = frozenset({0xC0, 0xC1, 0xC2})
_SKIPPED = frozenset({0xC4, 0xDD, 0xFE, _APP0})  # DHT, DRI, COM, APP0
_KNOWN = _SOF | _SKIPPED | {_DQT, _SOS}


def plain_jpeg_size(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """``(width, height)`` of a JPEG whose header (in ``data``, the file's first bytes) is plain; else None.

    Args:
        data: The first bytes of the file (64 kB holds the header of nearly every JPEG).
        max_pixels: Sizes over this many pixels return None (PIL warns or raises about them).
    """
    if not data.startswith(_SOI):
        return None
    pos, size, end_of_data = 2, None, len(data)
    while True:
        if pos + 4 > end_of_data or data[pos] != 0xFF or data[pos + 1] not in _KNOWN:
            return None
        marker, length = data[pos + 1], (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > end_of_data:
            return None
        segment = data[pos + 4 : end]
        if marker == _SOS:
            break
        if marker in _SOF:
            if size is not None:
                return None
            size = _sof_size(segment)
            if size is None:
                return None
        elif (marker == _DQT and not _tables_complete(segment)) or (marker == _APP0 and not _app0_ok(segment)):
            return None
        pos = end
    if size is None or not 0 < size[0] * size[1] <= max_pixels:
        return None
    return size


def _sof_size(segment: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of an 8-bit, 1- or 3-component frame header PIL reads without error; else None."""
    if len(segment) < 6 or (len(segment) - 6) % 3 or segment[0] != 8 or segment[5] not in (1, 3):
        return None
    return (segment[3] << 8) | segment[4], (segment[1] << 8) | segment[2]


def _tables_complete(segment: bytes) -> bool:
    """Whether every quantisation table of a DQT segment is complete (1 + 64 or 1 + 128 bytes each)."""
    pos = 0
    while pos < len(segment):
        pos += 1 + (64 if segment[pos] >> 4 == 0 else 128)
        if pos > len(segment):
            return False
    return True


def _app0_ok(segment: bytes) -> bool:
    return not segment.startswith(b"JFIF") or len(segment) >= 7
