"""Progress of long data steps (label scan, image caches): a bar on a terminal, periodic log lines otherwise.

When stderr is a terminal, a transient rich progress bar. When it is not (output captured to a log file, a batch
job), one ``info`` line every :data:`LOG_INTERVAL_S` seconds, ``<description>: <done>/<total> (<pct>%),
<rate>/s, <eta> left``, and a closing line with the total time once any such line was written: a short step stays
silent, a long one shows that it is alive and when it will end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
"""Seconds between progress lines when stderr is not a terminal."""

T = TypeVar("T")


def progress(
    items: Iterable[T], total: int, description: str, enabled: bool = True, size: Callable[[T], int] | None = None
) -> Iterator[T]:
    """Yield from ``items`` while showing progress (see the module docstring); ``enabled=False`` shows nothing.

    Args:
        items: The work, item by item.
        total: Units of work in all items.
        description: What is done, e.g. ``Scanning train``.
        enabled: False: no bar, no lines.
        size: Units of work in an item (default 1 each), e.g. the images in a chunk.
    """
    size = size or _one
    if not enabled:
        yield from items
    elif sys.stderr is not None and sys.stderr.isatty():
        yield from _bar(items, total, description, size)
    else:
        yield from _log_lines(items, total, description, LOG_INTERVAL_S, size)


def _one(_item: object) -> int:
    return 1


def _bar(items: Iterable[T], total: int, description: str, size: Callable[[T], int]) -> Iterator[T]:
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task, size(item))


def _log_lines(
    items: Iterable[T], total: int, description: str, interval: float, size: Callable[[T], int] = _one
) -> Iterator[T]:
    start = last = time.monotonic()
    done, written = 0, False
    for item in items:
        yield item
        done += size(item)
        now = time.monotonic()
        if now - last >= interval and done < total:
            last, written = now, True
            log.info("%s", progress_line(description, done, total, now - start))
    if written:
        log.info("%s: %d/%d done in %.1f s", description, done, total, time.monotonic() - start)


def progress_line(description: str, done: int, total: int, seconds: float) -> str:
    """``Scanning train: 12000/120000 (10%), 3000/s, 36 s left``."""
    rate = done / seconds if seconds > 0 else 0.0
    left = f"{(total - done) / rate:.0f} s left" if rate > 0 else "time left unknown"
    return f"{description}: {done}/{total} ({100 * done / max(total, 1):.0f}%), {rate:.0f}/s, {left}"
