"""The label-scan cache: JSON files in the project's cache folder, never beside the dataset.

A cache file holds one split's scan (image shapes, labels, messages). It is valid only while its fingerprint
matches: a hash of the cache version, the class names, and the path, size and ``mtime_ns`` of every image and
label file. Touching, editing, adding or removing any of them, or changing ``names``, forces a rescan.
The cache is never a pickle; a damaged cache file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the scan rules or the cache layout change; older cache files are then ignored."""

CACHE_ENV = "LIGHTNING_YOLO_CACHE"
"""Environment variable overriding the cache folder (read at call time)."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The project's cache folder: ``cache_dir``, else ``$LIGHTNING_YOLO_CACHE``, else ``~/.cache/lightning_yolo``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lightning_yolo"


def label_cache_path(sources: Sequence[str | Path], cache_dir: str | Path | None = None) -> Path:
    """The cache file of a split, named by a hash of its source folders / list files."""
    key = "\n".join(str(Path(s).absolute()) for s in sources)
    return cache_root(cache_dir) / "labels" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def files_fingerprint(image_files: Sequence[str], label_files: Sequence[str], names: Sequence[str]) -> str:
    """Hash of the cache version, the names and every file's path, size and mtime_ns (missing files included)."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, list(names)]).encode())
    for path in [*image_files, *label_files]:
        digest.update(f"{path}\0{_stat_key(path)}\n".encode())
    return digest.hexdigest()


def _stat_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def load_cache(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The cached payload when the file exists, parses and matches ``fingerprint``; else None."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
        return None
    return payload if payload.get("fingerprint") == fingerprint else None


def save_cache(path: Path, payload: dict[str, Any]) -> bool:
    """Write the payload atomically (temp file + rename); warns and returns False when the folder is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**payload, "version": CACHE_VERSION}, f, separators=(",", ":"))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        log.warning("label cache not written to %s: %s", path, err)
        return False
    return True
