"""Label files: parse and validate YOLO-format label text, and write it back.

A label file holds one object per line, ``class x_centre y_centre width height``, coordinates normalised to
[0, 1] by the image width and height. A line of ``class x1 y1 x2 y2 x3 y3 ...`` (a polygon, as in YOLOv5
segmentation labels) is accepted and turned into its bounding box. UTF-8 with or without a byte-order mark, LF or
CRLF line ends; blank lines are ignored. A missing or empty file means a background image (no objects).
A label file that is not a regular file (a FIFO, socket, device or directory, also through a symlink) is never
opened, and one larger than :data:`MAX_LABEL_BYTES` is never read: either costs its image, with the reason.

An image whose label file has any bad line is skipped; :class:`LabelError` lists every bad line as
``file:line: reason``. The rules:

- 5 values per box line, or an odd number >= 7 for a polygon line; every value a finite number;
- class id an integer in ``[0, nc)``;
- coordinates in ``[0, 1]``; values within :data:`COORD_TOLERANCE` outside are clipped, further out is an error;
- width and height > 0; a box reaching past the image border is clipped to it;
- exact duplicate lines are dropped and counted (a warning, not an error).
"""

from __future__ import annotations

import functools
import math
import os
import stat
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lightning_yolo.data.config import DatasetError

COORD_TOLERANCE = 1e-3
"""How far outside [0, 1] a normalised coordinate may be and still be clipped into range instead of rejected."""

MAX_LABEL_BYTES = 16 << 20
"""Largest label file read (a label file of 10,000 boxes is about 400 kB)."""

_MAX_PROBLEMS = 10  # bad lines quoted per file
_EDGE_SLACK = 1e-6  # box edges this close outside the image are rounding noise of the text, left as written


class LabelError(DatasetError):
    """A label file cannot be used; ``problems`` holds one ``file:line: reason`` string per bad line."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:_MAX_PROBLEMS]
        more = [f"... and {len(problems) - _MAX_PROBLEMS} more bad lines"] if len(problems) > _MAX_PROBLEMS else []
        super().__init__("\n".join(shown + more))
        self.problems = problems


class ParsedLabels(NamedTuple):
    """A parsed label file.

    Attributes:
        labels: ``(n, 5)`` float32 ``[class, x_centre, y_centre, width, height]``, normalised.
        warnings: Non-fatal findings, each naming the file.
        duplicates: Number of duplicate lines dropped.
        found: False when the label file does not exist (a background image).
    """

    labels: np.ndarray
    warnings: list[str]
    duplicates: int
    found: bool = True


def empty_labels() -> np.ndarray:
    """A ``(0, 5)`` float32 label array (a background image)."""
    return np.zeros((0, 5), dtype=np.float32)


def parse_label_file(path: str | Path, nc: int) -> ParsedLabels:
    """Read and validate one label file; a missing file is a background image.

    Raises:
        LabelError: any line is malformed, or the file is not a regular file, larger than :data:`MAX_LABEL_BYTES`,
            unreadable or not UTF-8 text.
    """
    path = os.fspath(path)  # a string: no pathlib parsing per file in a 100,000-image scan
    try:
        text = read_label_bytes(path).decode("utf-8-sig")
    except FileNotFoundError:
        return ParsedLabels(empty_labels(), [], 0, found=False)
    except UnicodeDecodeError as err:
        raise LabelError([f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"]) from None
    except OSError as err:
        raise LabelError([f"{path}: cannot read: {err.strerror or err}"]) from None
    return parse_label_text(text, nc, path)


def read_label_bytes(path: str | Path) -> bytes:
    """The bytes of a label file, checked to be a regular file of at most :data:`MAX_LABEL_BYTES` before reading.

    The type is checked before the file is opened (opening a FIFO blocks until a writer comes; reading a device
    never ends), and again on the open descriptor, in case the name was replaced in between.

    Raises:
        LabelError: not a regular file, or too large.
        OSError: the file cannot be opened or read (FileNotFoundError when missing).
    """
    _check_label_stat(os.stat(path), path)  # follows symlinks: a link to /dev/zero is judged by its target
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as f:
        _check_label_stat(os.fstat(fd), path)
        data = f.read(MAX_LABEL_BYTES + 1)  # bounded even if the file grows after the check
    if len(data) > MAX_LABEL_BYTES:
        raise LabelError([f"{path}: label file too large (over {MAX_LABEL_BYTES:,} bytes)"])
    return data


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _check_label_stat(st: os.stat_result, path: str | Path) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "an unknown kind of file")
        raise LabelError([f"{path}: not a regular file: {kind}"])
    if st.st_size > MAX_LABEL_BYTES:
        raise LabelError([f"{path}: label file too large ({st.st_size:,} bytes; at most {MAX_LABEL_BYTES:,})"])


def parse_label_text(text: str, nc: int, source: str = "<labels>") -> ParsedLabels:
    """Parse label text (see the module docstring for the rules); ``source`` names the file in messages.

    Files of valid box lines that need no clipping (nearly every file) take a short path; any other file goes
    through :func:`parse_row` line by line. Both give bit-identical labels.

    Raises:
        LabelError: any line is malformed.
    """
    text = text.lstrip("\ufeff")
    values = _parse_valid_boxes(text, nc)
    if values is None:
        values = _parse_rows(text, nc, source)
    if not values:
        return ParsedLabels(empty_labels(), [], 0)
    rows = [tuple(values[i : i + 5]) for i in range(0, len(values), 5)]
    unique = dict.fromkeys(rows)  # by value, first occurrences in file order (as np.unique(return_index=True))
    duplicates = len(rows) - len(unique)
    labels = np.array(list(unique) if duplicates else rows, dtype=np.float32).reshape(-1, 5)
    if not duplicates:
        return ParsedLabels(labels, [], 0)
    warning = f"{source}: {duplicates} duplicate label line{'s' if duplicates > 1 else ''} removed"
    return ParsedLabels(labels, [warning], duplicates)


def _parse_rows(text: str, nc: int, source: str) -> list[float]:
    """Line by line with :func:`parse_row`: every row's values rounded to float32 as kept, one flat list.

    Raises:
        LabelError: every bad line, each as ``file:line: reason``.
    """
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        row, problem = parse_row(tokens, nc)
        if problem:
            problems.append(f"{source}:{number}: {problem}")
        else:
            rows.append(row)
    if problems:
        raise LabelError(problems)
    return np.array(rows, dtype=np.float32).reshape(-1).tolist()


def _parse_valid_boxes(text: str, nc: int) -> list[float] | None:
    """The float32-rounded values of a file of valid box lines that need no clipping, one flat list; else None.

    The common case: 5 values per line, class ids valid, every coordinate in [0, 1] and every box inside the image
    (within :data:`_EDGE_SLACK`), so that :func:`parse_row`'s clipping changes nothing and its float32 rounding is
    the only step; the result is then the same, bit for bit. Any other file (a polygon, a bad value, a coordinate
    or box edge needing a clip) returns None and goes through :func:`parse_row` line by line, which reports
    problems and clips.
    """
    rows = [tokens for tokens in map(str.split, text.splitlines()) if tokens]
    if any(len(tokens) != 5 for tokens in rows):
        return None
    try:
        values = [float(token) for tokens in rows for token in tokens]
    except ValueError:
        return None
    if not values:
        return values
    classes, coords = values[0::5], [v for k in range(1, 5) for v in values[k::5]]
    if not all(map(math.isfinite, values)) or min(coords) < 0 or max(coords) > 1:
        return None
    if min(classes) < 0 or max(classes) >= nc or not all(c.is_integer() for c in classes):
        return None
    packer = _float32(len(values))
    rounded = packer.unpack(packer.pack(*values))  # C casts to float: np.float32(v) of every value
    low, high = -_EDGE_SLACK, 1 + _EDGE_SLACK
    for i in range(0, len(values), 5):
        x, y, w, h = rounded[i + 1 : i + 5]
        if w <= 0 or h <= 0 or x - w / 2 < low or y - h / 2 < low or x + w / 2 > high or y + h / 2 > high:
            return None
    return list(rounded)


@functools.lru_cache(maxsize=256)
def _float32(count: int) -> struct.Struct:
    """Packs ``count`` Python floats as native float32 (the same rounding as ``np.float32``)."""
    return struct.Struct(f"={count}f")


def parse_row(tokens: list[str], nc: int) -> tuple[list[float], str]:
    """Validate one split line; returns ``([cls, x, y, w, h], "")`` or ``([], reason)``."""
    n = len(tokens)
    if n != 5 and (n < 7 or n % 2 == 0):
        return [], f"expected 5 values 'class x y w h' (or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), got {n}"
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            return [], f"not a number: {token[:40]!r}"
    if not all(math.isfinite(v) for v in values):
        return [], "NaN or infinite value"
    problem = _check_class(values[0], nc) or _check_coordinates(values[1:])
    if problem:
        return [], problem
    # in range now: round to the float32 values that are kept, so the clip below sees exactly those
    coords = [float(np.float32(min(max(v, 0.0), 1.0))) for v in values[1:]]
    box = _polygon_to_xywh(coords) if n > 5 else _clip_xywh(coords)
    if box[2] <= 0 or box[3] <= 0:
        return [], "zero width or height"
    return [values[0], *box], ""


def _check_class(value: float, nc: int) -> str:
    if value < 0:
        return f"negative class id {value:g}"
    if not value.is_integer():
        return f"class id {value:g} is not an integer"
    if value >= nc:
        return f"class id {int(value)} >= nc ({nc}); valid ids are 0..{nc - 1}"
    return ""


def _check_coordinates(coords: list[float]) -> str:
    low, high = min(coords), max(coords)
    if low < -COORD_TOLERANCE:
        return f"negative coordinate {low:g}"
    if high > 1 + COORD_TOLERANCE:
        return f"coordinate {high:g} > 1: coordinates must be normalised to [0, 1]"
    return ""


def _clip_xywh(box: list[float]) -> list[float]:
    """Clip a normalised centre box to the image; boxes already inside are returned unchanged (bit-exact)."""
    x, y, w, h = box
    x1, y1, x2, y2 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
    if min(x1, y1) >= -_EDGE_SLACK and max(x2, y2) <= 1 + _EDGE_SLACK:
        return box
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def _polygon_to_xywh(coords: list[float]) -> list[float]:
    xs, ys = coords[0::2], coords[1::2]
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
