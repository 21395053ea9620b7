"""Optional image caches for a dataset: resized images held in RAM, or saved as ``.npy`` files in the cache folder.

``ram``: every image is decoded and resized once, at dataset construction, when the estimate (with a safety margin)
fits in every memory budget of :func:`memory_budgets`: available memory, the cgroup (container) memory limit, and
the address-space limit (``ulimit -v``); otherwise a warning names the tightest budget with its numbers and images
are read from disk as usual. The data module checks train and val against one budget before caching either.
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
from typing import NamedTuple

import numpy as np

from lightning_yolo.data.cache import cache_root
from lightning_yolo.data.progress import progress

log = logging.getLogger(__name__)

RAM_SAFETY_MARGIN = 0.1
"""``cache='ram'`` needs the estimate times ``1 + margin`` to be available."""

Loader = Callable[[int], np.ndarray]

PROC_SELF_STATUS = Path("/proc/self/status")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_CGROUP_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63
_CGROUP_FILES = (  # (folder under CGROUP_ROOT, limit file, usage file, reclaimable page cache in memory.stat)
    ("", "memory.max", "memory.current", "inactive_file"),  # v2
    ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),  # v1
)


class MemoryBudget(NamedTuple):
    """Memory a RAM cache may use under one limit.

    Attributes:
        free: Bytes left under the limit.
        source: The limit, for messages.
        per_process: True when each process has its own (an address-space limit), False when the processes of
            the machine or container share it.
    """

    free: int
    source: str
    per_process: bool


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


def address_space_headroom_bytes() -> int | None:
    """Bytes this process may still map: the soft ``RLIMIT_AS`` (``ulimit -v``) minus ``VmSize``; None if unlimited."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY or limit < 0:
        return None
    return max(limit - (_proc_status_bytes("VmSize") or 0), 0)


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes; None when unknown."""
    try:
        with open(PROC_SELF_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_headroom_bytes() -> int | None:
    """Bytes left under the cgroup memory limits of this process and its ancestors (v2 or v1); None if unlimited.

    Per cgroup: limit - usage + inactive file cache (page cache the kernel reclaims before it kills anything).
    """
    headrooms = []
    for folder, limit_file, usage_file, reclaimable in _cgroup_folders():
        limit, usage = _read_int(folder / limit_file), _read_int(folder / usage_file)
        if limit is None or usage is None or limit >= _CGROUP_NO_LIMIT:
            continue  # no such controller here, or "max"
        headrooms.append(max(limit - usage + _memory_stat(folder, reclaimable), 0))
    return min(headrooms, default=None)


def _cgroup_folders() -> list[tuple[Path, str, str, str]]:
    """This process's cgroup folders, then their ancestors up to the mount point, for cgroup v2 and v1."""
    try:
        lines = PROC_SELF_CGROUP.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    own = {"v2": "/", "v1": "/"}
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not controllers:
            own["v2"] = path or "/"
        elif "memory" in controllers.split(","):
            own["v1"] = path or "/"
    folders = []
    for (sub, *files), version in zip(_CGROUP_FILES, ("v2", "v1"), strict=True):
        base = CGROUP_ROOT / sub if sub else CGROUP_ROOT
        folder = base / own[version].lstrip("/")
        folders += [(f, *files) for f in (folder, *folder.parents) if f == base or base in f.parents]
    return folders


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _memory_stat(folder: Path, key: str) -> int:
    try:
        with open(folder / "memory.stat", encoding="ascii") as f:
            return next((int(line.split()[1]) for line in f if line.split()[:1] == [key]), 0)
    except (OSError, ValueError, IndexError):
        return 0


def memory_budgets() -> list[MemoryBudget]:
    """Every known limit on a RAM cache's memory: MemAvailable, the cgroup limit and the address-space limit."""
    sources = (
        (available_memory_bytes(), "available memory (MemAvailable)", False),
        (cgroup_headroom_bytes(), "the cgroup memory limit", False),
        (address_space_headroom_bytes(), "the address-space limit (ulimit -v)", True),
    )
    return [MemoryBudget(free, source, per_process) for free, source, per_process in sources if free is not None]


def resized_bytes(shapes_hw: np.ndarray, imgsz: int) -> int:
    """Bytes of all images once resized to long side ``imgsz`` (3 channels, uint8)."""
    shapes = np.asarray(shapes_hw, dtype=np.float64).reshape(-1, 2)
    ratio = imgsz / shapes.max(axis=1)
    return int(np.ceil(shapes[:, 0] * ratio).dot(np.ceil(shapes[:, 1] * ratio)) * 3)


def ram_cache_fits(shapes_hw: np.ndarray, imgsz: int, copies: int = 1, what: str = "the images") -> bool:
    """Whether ``copies`` RAM caches (one per process) of these images fit every memory budget.

    Logs a warning naming the tightest budget, with the numbers, when they do not.

    Args:
        shapes_hw: ``(n, 2)`` original ``[height, width]`` of the images.
        imgsz: Long side they are resized to.
        copies: Processes on this machine that each hold a cache.
        what: Names the images in the warning (``train+val``).
    """
    one = resized_bytes(shapes_hw, imgsz) * (1 + RAM_SAFETY_MARGIN)
    short = [(b.free - (one if b.per_process else one * copies), b) for b in memory_budgets()]
    deficit, budget = min(short, default=(0.0, None))
    if budget is None or deficit >= 0:
        return True
    need = one if budget.per_process else one * copies
    copies_note = f" ({copies} processes x {one / 2**30:.2f} GB)" if need != one else ""
    log.warning(
        "cache='ram' needs %.2f GB for %s%s but only %.2f GB is free under %s: images are read from disk instead",
        need / 2**30,
        what,
        copies_note,
        budget.free / 2**30,
        budget.source,
    )
    return False


def fill_ram_cache(count: int, load: Loader, workers: int, what: str = "images") -> list[np.ndarray | None]:
    """Load every image with ``load(i)`` (in threads, with progress); an image that fails to load stays None."""

    def safe(i: int) -> np.ndarray | None:
        try:
            return load(i)
        except Exception as err:  # noqa: BLE001 - the dataset reports and replaces unreadable images later
            log.warning("cache='ram': image %d not cached: %s", i, err)
            return None

    return _map(safe, count, workers, f"Caching {what} in RAM")


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


def fill_disk_cache(paths: Sequence[Path], load: Loader, workers: int, what: str = "images") -> int:
    """Save ``load(i)`` to each missing ``paths[i]`` (atomically, with progress); returns how many were written."""

    def write(i: int) -> int:
        if paths[i].is_file():
            return 0
        try:
            save_npy(paths[i], load(i))
        except Exception as err:  # noqa: BLE001 - an image that cannot be cached is read directly later
            log.warning("cache='disk': image %d not cached: %s", i, err)
            return 0
        return 1

    return sum(_map(write, len(paths), workers, f"Caching {what} on disk"))


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


def _map(fn: Callable[[int], object], count: int, workers: int, description: str) -> list:
    """``[fn(i) for i in range(count)]`` in threads, in order, with progress (:mod:`lightning_yolo.data.progress`)."""
    workers = min(max(workers, 1), os.cpu_count() or 1)
    if workers == 1 or count < 2:
        return list(progress((fn(i) for i in range(count)), count, description))
    with ThreadPool(workers) as pool:
        return list(progress(pool.imap(fn, range(count), chunksize=4), count, description))
