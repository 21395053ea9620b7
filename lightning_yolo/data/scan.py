"""Scan a split: verify every image and label file (on every core, with progress), cache the result.

Every problem is logged as ``file:line: reason`` (or ``file: reason``) and kept in :attr:`ScanResult.messages`;
a summary line per split counts images, labelled images, backgrounds, boxes, duplicate lines removed and corrupt
(skipped) images. Nothing in the dataset folder is written.

Each image file is opened once (PIL reads its header; see :func:`lightning_yolo.data.images.verify_image`) and
each label file read once. The result holds the labels once, as a :class:`LabelTable` (one array for the split),
and the cache stores the same arrays (:mod:`lightning_yolo.data.cache`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.pool import Pool, ThreadPool
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lightning_yolo.data.cache import files_fingerprint, label_cache_path, load_cache, save_cache
from lightning_yolo.data.config import image_to_label_file
from lightning_yolo.data.images import verify_image
from lightning_yolo.data.label_table import LabelTable
from lightning_yolo.data.labels import LabelError, parse_label_file
from lightning_yolo.data.progress import progress as show_progress

log = logging.getLogger(__name__)

PROCESS_POOL_MIN_FILES = 2000
"""Splits with at least this many images are scanned by worker processes instead of threads."""

CHUNK = 256
"""Images per task handed to a scan worker (and per progress step)."""

SKIPPED = "(image skipped)"
"""Suffix of the messages whose image is left out of the split."""


@dataclass
class ScanSummary:
    """Counts of one split's scan.

    Attributes:
        images: Image files found.
        labelled: Usable images with at least one box.
        backgrounds: Usable images without boxes (label file missing or empty).
        missing_labels: Backgrounds whose label file does not exist.
        boxes: Boxes in usable images (after duplicates were removed).
        duplicates: Duplicate label lines removed.
        corrupt: Images skipped because the image or its label file is bad.
        warnings: Number of messages (errors and warnings) reported.
    """

    images: int = 0
    labelled: int = 0
    backgrounds: int = 0
    missing_labels: int = 0
    boxes: int = 0
    duplicates: int = 0
    corrupt: int = 0
    warnings: int = 0

    def line(self) -> str:
        """One-line human summary."""
        return (
            f"{self.images} images, {self.labelled} labelled, {self.backgrounds} backgrounds, {self.boxes} boxes, "
            f"{self.duplicates} duplicates removed, {self.corrupt} corrupt (skipped)"
        )


@dataclass
class ScanResult:
    """The usable images of a split with their shapes and labels.

    Attributes:
        split: Split name used in messages (``train``, ``val``, ``test``).
        image_files: Usable image paths, sorted as found.
        shapes: ``(n, 2)`` int64 ``[height, width]`` of each image after EXIF orientation.
        labels: Per image ``(k, 5)`` float32 ``[class, x, y, w, h]`` normalised, in one read-only table.
        summary: The counts.
        messages: Every ``file:line: reason`` / ``file: reason`` message of the scan.
        from_cache: True when read from the cache instead of scanned.
    """

    split: str
    image_files: list[str]
    shapes: np.ndarray
    labels: LabelTable
    summary: ScanSummary
    messages: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.image_files)


class ScanRecord(NamedTuple):
    """What the scan found about one image (small: it travels back from a worker process).

    Attributes:
        shape: ``(height, width)`` after EXIF orientation, or None when the image is unusable.
        labels: ``(k, 5)`` float32 labels, or None when the label file is unusable.
        label_found: Whether the label file exists.
        duplicates: Duplicate label lines dropped.
        messages: Problems found, each naming its file; errors end in :data:`SKIPPED`.
    """

    shape: tuple[int, int] | None
    labels: np.ndarray | None
    label_found: bool
    duplicates: int
    messages: list[str]


def scan_image(image_file: str, nc: int) -> ScanRecord:
    """Verify one image and its label file."""
    check = verify_image(image_file)
    errors = [f"{image_file}: {check.error}"] if check.error else []
    warnings = [f"{image_file}: {check.warning}"] if check.warning else []
    labels, duplicates, found = None, 0, True
    try:
        parsed = parse_label_file(image_to_label_file(image_file), nc)
        labels, duplicates, found = parsed.labels, parsed.duplicates, parsed.found
        warnings += parsed.warnings
    except LabelError as err:
        errors += err.problems
    messages = [f"{m} {SKIPPED}" for m in errors] + warnings
    return ScanRecord(check.shape, labels, found, duplicates, messages)


def scan_split(
    image_files: Sequence[str | Path],
    names: Sequence[str],
    *,
    split: str = "train",
    sources: Sequence[str | Path] | None = None,
    workers: int = 8,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> ScanResult:
    """Scan a split, or read it from the cache when no file changed since the last scan.

    Args:
        image_files: The split's images (see :func:`lightning_yolo.data.config.list_image_files`).
        names: Class names; ``len(names)`` is nc, and a change of names invalidates the cache.
        split: Name used in log lines.
        sources: The split's folders / list files; they name the cache file (default: the image list).
        workers: Processes (threads for small splits) verifying files in parallel, at most one per CPU
            (0 or 1: in this thread).
        cache_dir: Cache folder (default :func:`lightning_yolo.data.cache.cache_root`).
        progress: Show progress while scanning (:mod:`lightning_yolo.data.progress`).
        verbose: Log every message and the summary line.
    """
    files = [str(f) for f in image_files]
    labels = [image_to_label_file(f) for f in files]
    fingerprint = files_fingerprint(files, labels, names)
    cache_path = label_cache_path(sources if sources else files, cache_dir)
    arrays = load_cache(cache_path, fingerprint)
    from_cache = arrays is not None and _fits(arrays, len(files))
    if not from_cache:
        if verbose:
            log.info("%s: scanning %d images with %d workers", split, len(files), _worker_count(workers, len(files)))
        parts = _scan_all(files, len(names), workers)
        shown = show_progress(parts, len(files), f"Scanning {split}", progress, size=lambda part: len(part["counts"]))
        arrays = merge_arrays(list(shown))
        save_cache(cache_path, arrays, fingerprint)
    result = result_from_arrays(arrays, files, split, from_cache)
    if verbose:
        log_result(result, cache_path)
    return result


def _worker_count(workers: int, files: int) -> int:
    """``workers``, at most one per CPU this process may run on and one per file, at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(min(workers, cpus, files), 1)


def _scan_all(files: list[str], nc: int, workers: int) -> Iterator[dict[str, np.ndarray]]:
    """The arrays of consecutive chunks of :data:`CHUNK` files, in file order.

    Threads scan small splits, processes (no GIL contention) large ones; a chunk travels back from a worker as a
    few arrays, not one object per image.
    """
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = _worker_count(workers, len(files))
    if workers <= 1:
        yield from (scan_chunk(chunk, nc) for chunk in chunks)
        return
    pool_type = ThreadPool if len(files) < PROCESS_POOL_MIN_FILES else Pool
    with pool_type(workers) as pool:
        yield from pool.imap(partial(scan_chunk, nc=nc), chunks)


def scan_chunk(files: Sequence[str], nc: int) -> dict[str, np.ndarray]:
    """:func:`records_to_arrays` of :func:`scan_image` of each file."""
    return records_to_arrays((scan_image(f, nc) for f in files), len(files))


def merge_arrays(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of consecutive chunks (see :func:`records_to_arrays`) as the arrays of all their images."""
    if not parts:
        return records_to_arrays(iter(()), 0)
    merged = {key: np.concatenate([p[key] for p in parts]) for key in _CONCATENATED}
    blobs = [p["messages"].tobytes() for p in parts if int(p["message_count"][0])]
    merged["message_count"] = np.array([sum(int(p["message_count"][0]) for p in parts)], dtype=np.int64)
    merged["messages"] = np.frombuffer(b"\0".join(blobs), dtype=np.uint8)
    return merged


_CONCATENATED = ("shapes", "counts", "label_found", "duplicates", "boxes")


def records_to_arrays(records: Iterator[ScanRecord], count: int) -> dict[str, np.ndarray]:
    """The cache's arrays from ``count`` scan records (images in order; boxes of usable images only).

    ``shapes`` is ``-1`` for an unusable image, ``counts`` is ``-1`` for an unusable label file; ``messages``
    is every message in order, UTF-8, separated by NUL bytes.
    """
    shapes = np.full((count, 2), -1, dtype=np.int32)
    counts = np.full(count, -1, dtype=np.int32)
    found = np.zeros(count, dtype=bool)
    duplicates = np.zeros(count, dtype=np.int32)
    boxes, messages = [], []
    for i, record in enumerate(records):
        messages += record.messages
        found[i], duplicates[i] = record.label_found, record.duplicates
        if record.shape is not None:
            shapes[i] = record.shape
        if record.labels is not None:
            counts[i] = len(record.labels)
            if record.shape is not None:
                boxes.append(record.labels)
    blob = "\0".join(m.replace("\0", "\\0") for m in messages).encode("utf-8", "surrogateescape")
    return {
        "shapes": shapes,
        "counts": counts,
        "label_found": found,
        "duplicates": duplicates,
        "boxes": np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 5), dtype=np.float32),
        "message_count": np.array([len(messages)], dtype=np.int64),
        "messages": np.frombuffer(blob, dtype=np.uint8),
    }


_ARRAYS = {"shapes": 2, "counts": 1, "label_found": 1, "duplicates": 1, "boxes": 2, "message_count": 1, "messages": 1}


def _fits(arrays: dict[str, np.ndarray], count: int) -> bool:
    """Whether cached arrays are complete and consistent with ``count`` images (else the split is rescanned)."""
    if any(name not in arrays or arrays[name].ndim != ndim for name, ndim in _ARRAYS.items()):
        return False
    usable = (arrays["shapes"][:, 0] >= 0) & (arrays["counts"] >= 0) if len(arrays["shapes"]) == count else None
    return (
        usable is not None
        and all(len(arrays[k]) == count for k in ("counts", "label_found", "duplicates"))
        and arrays["shapes"].shape[1:] == (2,)
        and arrays["boxes"].shape[1:] == (5,)
        and arrays["message_count"].shape == (1,)
        and int(arrays["counts"][usable].sum()) == len(arrays["boxes"])
    )


def result_from_arrays(arrays: dict[str, np.ndarray], files: list[str], split: str, from_cache: bool) -> ScanResult:
    """Build a :class:`ScanResult` (usable images only) and its summary from the cache's arrays."""
    shapes, counts, found = arrays["shapes"], arrays["counts"], arrays["label_found"]
    usable = (shapes[:, 0] >= 0) & (counts >= 0)
    kept = counts[usable]
    blob = arrays["messages"].tobytes().decode("utf-8", "surrogateescape")
    messages = blob.split("\0") if int(arrays["message_count"][0]) else []
    summary = ScanSummary(
        images=len(files),
        labelled=int((kept > 0).sum()),
        backgrounds=int((kept == 0).sum()),
        missing_labels=int((usable & ~found).sum()),
        boxes=int(kept.sum()),
        duplicates=int(arrays["duplicates"][usable].sum()),
        corrupt=int((~usable).sum()),
        warnings=len(messages),
    )
    image_files = files if usable.all() else [files[i] for i in np.flatnonzero(usable)]
    table = LabelTable(arrays["boxes"], kept)
    return ScanResult(split, image_files, shapes[usable].astype(np.int64), table, summary, messages, from_cache)


def log_result(result: ScanResult, cache_path: Path) -> None:
    """Log every message of a scan, then its summary line."""
    for message in result.messages:
        log.warning(message)
    source = f"cache {cache_path}" if result.from_cache else f"scanned, cache {cache_path}"
    log.info("%s: %s (%s)", result.split, result.summary.line(), source)
    if not result.image_files:
        log.warning("%s: no usable images", result.split)
