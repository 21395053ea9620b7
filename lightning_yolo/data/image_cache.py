"""Optional image caches for a dataset: resized images held in RAM, or saved as ``.npy`` files in the cache folder.

``ram``: every image is decoded and resized once, at dataset construction, when the estimate fits in available
memory (with a safety margin); otherwise a warning is logged and images are read from disk as usual.
``disk``: each resized image is saved once as ``<cache>/images/<key>.npy`` (``np.save``; read back with
``allow_pickle=False``), keyed by the image's path, size, mtime and the resize settings, so a changed image or
image size never reads a stale file. The dataset folder itself is never written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np

from lightning_yolo.data.cache import cache_root

log = logging.getLogger(__name__)

RAM_SAFETY_MARGIN = 0.1
"""``cache='ram'`` needs the estimate times ``1 + margin`` to be available."""

Loader = Callable[[int], np.ndarray]


def available_memory_bytes() -> int | None:
    """Memory available to new allocations (``MemAvailable`` of ``/proc/meminfo``, else free pages); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def resized_bytes(shapes_hw: np.ndarray, imgsz: int) -> int:
    """Bytes of all images once resized to long side ``imgsz`` (3 channels, uint8)."""
    shapes = np.asarray(shapes_hw, dtype=np.float64).reshape(-1, 2)
    ratio = imgsz / shapes.max(axis=1)
    return int(np.ceil(shapes[:, 0] * ratio).dot(np.ceil(shapes[:, 1] * ratio)) * 3)


def ram_cache_fits(shapes_hw: np.ndarray, imgsz: int, copies: int = 1) -> bool:
    """Whether ``copies`` RAM caches of these images fit in available memory; logs a warning when not."""
    need = resized_bytes(shapes_hw, imgsz) * copies * (1 + RAM_SAFETY_MARGIN)
    have = available_memory_bytes()
    if have is None or need <= have:
        return True
    log.warning(
        "cache='ram' needs %.2f GB but only %.2f GB is available: images are read from disk instead",
        need / 2**30,
        have / 2**30,
    )
    return False


def fill_ram_cache(count: int, load: Loader, workers: int) -> list[np.ndarray | None]:
    """Load every image with ``load(i)`` (in threads); an image that fails to load stays None."""

    def safe(i: int) -> np.ndarray | None:
        try:
            return load(i)
        except Exception as err:  # noqa: BLE001 - the dataset reports and replaces unreadable images later
            log.warning("cache='ram': image %d not cached: %s", i, err)
            return None

    return _map(safe, count, workers)


def disk_cache_path(
    image_file: str, imgsz: int, augment: bool, cache_dir: str | Path | None = None, fast_decode: bool = False
) -> Path:
    """``.npy`` path of an image's resized copy; the key covers path, size, mtime and the resize settings."""
    try:
        st = os.stat(image_file)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    key = f"{Path(image_file).absolute()}\0{stamp}\0{imgsz}\0{int(augment)}"
    key += "\0reduced-decode" if fast_decode else ""  # keeps the keys of full-decode copies unchanged
    return cache_root(cache_dir) / "images" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def fill_disk_cache(paths: Sequence[Path], load: Loader, workers: int) -> int:
    """Save ``load(i)`` to ``paths[i]`` for every missing file (atomically); returns the number written."""

    def write(i: int) -> int:
        if paths[i].is_file():
            return 0
        try:
            save_npy(paths[i], load(i))
        except Exception as err:  # noqa: BLE001 - an image that cannot be cached is read directly later
            log.warning("cache='disk': image %d not cached: %s", i, err)
            return 0
        return 1

    return sum(_map(write, len(paths), workers))


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".npy.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_npy(path: Path) -> np.ndarray | None:
    """Read a cached image; None when missing or unreadable (the caller decodes the original instead)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _map(fn: Callable[[int], object], count: int, workers: int) -> list:
    workers = min(max(workers, 1), os.cpu_count() or 1)
    if workers == 1 or count < 2:
        return [fn(i) for i in range(count)]
    with ThreadPool(workers) as pool:
        return pool.map(fn, range(count), chunksize=4)
