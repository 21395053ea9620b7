"""Scan a split: verify every image and label file (in parallel, with a progress bar), cache the result.

Every problem is logged as ``file:line: reason`` (or ``file: reason``) and kept in :attr:`ScanResult.messages`;
a summary line per split counts images, labelled images, backgrounds, boxes, duplicate lines removed and corrupt
(skipped) images. Nothing in the dataset folder is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.pool import Pool, ThreadPool
from pathlib import Path
from typing import Any

import numpy as np

from lightning_yolo.data.cache import files_fingerprint, label_cache_path, load_cache, save_cache
from lightning_yolo.data.config import image_to_label_path
from lightning_yolo.data.images import verify_image
from lightning_yolo.data.labels import LabelError, parse_label_file

log = logging.getLogger(__name__)

PROCESS_POOL_MIN_FILES = 2000
"""Splits with at least this many images are scanned by worker processes instead of threads."""

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
        labels: Per image ``(k, 5)`` float32 ``[class, x, y, w, h]`` normalised.
        summary: The counts.
        messages: Every ``file:line: reason`` / ``file: reason`` message of the scan.
        from_cache: True when read from the cache instead of scanned.
    """

    split: str
    image_files: list[str]
    shapes: np.ndarray
    labels: list[np.ndarray]
    summary: ScanSummary
    messages: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.image_files)


def scan_image(image_file: str, nc: int) -> dict[str, Any]:
    """Verify one image and its label file; returns a JSON-serialisable record (see :func:`result_from_records`)."""
    label_file = image_to_label_path(image_file)
    check = verify_image(image_file)
    errors = [f"{image_file}: {check.error}"] if check.error else []
    warnings = [f"{image_file}: {check.warning}"] if check.warning else []
    labels, duplicates = None, 0
    try:
        parsed = parse_label_file(label_file, nc)
        labels, duplicates = parsed.labels.tolist(), parsed.duplicates
        warnings += parsed.warnings
    except LabelError as err:
        errors += err.problems
    messages = [f"{m} {SKIPPED}" for m in errors] + warnings
    return {
        "image": image_file,
        "shape": list(check.shape) if check.shape else None,
        "labels": labels,
        "label_found": label_file.is_file(),
        "duplicates": duplicates,
        "messages": messages,
    }


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
        image_files: The split's images (see :func:`lightning_yolo.data.config.list_images`).
        names: Class names; ``len(names)`` is nc, and a change of names invalidates the cache.
        split: Name used in log lines.
        sources: The split's folders / list files; they name the cache file (default: the image list).
        workers: Threads verifying files in parallel (0 or 1: in this thread).
        cache_dir: Cache folder (default :func:`lightning_yolo.data.cache.cache_root`).
        progress: Show a progress bar while scanning.
        verbose: Log every message and the summary line.
    """
    files = [str(f) for f in image_files]
    labels = [str(image_to_label_path(f)) for f in files]
    fingerprint = files_fingerprint(files, labels, names)
    cache_path = label_cache_path(sources if sources else files, cache_dir)
    payload = load_cache(cache_path, fingerprint)
    from_cache = payload is not None
    if payload is None:
        if verbose:
            log.info("%s: scanning %d images with %d workers", split, len(files), max(workers, 1))
        records = list(_progress(_scan_all(files, len(names), workers), len(files), f"Scanning {split}", progress))
        payload = {"fingerprint": fingerprint, "records": records}
        save_cache(cache_path, payload)
    result = result_from_records(payload["records"], split, from_cache)
    if verbose:
        log_result(result, cache_path)
    return result


def _scan_all(files: list[str], nc: int, workers: int) -> Iterator[dict[str, Any]]:
    """Scan records in file order; threads for small splits, processes (no GIL contention) for large ones."""
    workers = min(workers, os.cpu_count() or 1, len(files))
    if workers <= 1:
        yield from (scan_image(f, nc) for f in files)
        return
    pool_type = ThreadPool if len(files) < PROCESS_POOL_MIN_FILES else Pool
    with pool_type(workers) as pool:
        yield from pool.imap(partial(scan_image, nc=nc), files, chunksize=16)


def result_from_records(records: list[dict[str, Any]], split: str, from_cache: bool = False) -> ScanResult:
    """Build a :class:`ScanResult` (usable images only) and its summary from scan records."""
    summary = ScanSummary(images=len(records))
    files, shapes, labels, messages = [], [], [], []
    for record in records:
        messages += record["messages"]
        if record["shape"] is None or record["labels"] is None:
            summary.corrupt += 1
            continue
        boxes = np.array(record["labels"], dtype=np.float32).reshape(-1, 5)
        summary.labelled += bool(len(boxes))
        summary.backgrounds += not len(boxes)
        summary.missing_labels += not record["label_found"]
        summary.boxes += len(boxes)
        summary.duplicates += record["duplicates"]
        files.append(record["image"])
        shapes.append(record["shape"])
        labels.append(boxes)
    summary.warnings = len(messages)
    shape_array = np.array(shapes, dtype=np.int64).reshape(-1, 2)
    return ScanResult(split, files, shape_array, labels, summary, messages, from_cache)


def log_result(result: ScanResult, cache_path: Path) -> None:
    """Log every message of a scan, then its summary line."""
    for message in result.messages:
        log.warning(message)
    source = f"cache {cache_path}" if result.from_cache else f"scanned, cache {cache_path}"
    log.info("%s: %s (%s)", result.split, result.summary.line(), source)
    if not result.image_files:
        log.warning("%s: no usable images", result.split)


def _progress(items: Iterable[Any], total: int, description: str, enabled: bool) -> Iterator[Any]:
    """Yield from ``items`` while showing a rich progress bar on stderr (when enabled and a terminal)."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not (enabled and console.is_terminal)) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
