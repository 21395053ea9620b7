"""The label-scan cache: one ``.npz`` file of plain arrays per split, in the project's cache folder.

A cache file holds one split's scan as arrays (shapes, box counts, the boxes of every image as one float32
array, flags, messages), written with ``np.savez`` and read with ``np.load(allow_pickle=False)``: never a pickle,
and about 20 bytes per box. It is valid only while its fingerprint matches: a hash of the cache version, the class
names, and the path, size and ``mtime_ns`` of every image and label file, in order. Touching, editing, adding or
removing any of them, or changing ``names``, forces a rescan. The file list itself is not stored: a matching
fingerprint means it is the list the caller has. A damaged cache file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bump when the scan rules or the cache layout change; older cache files are then ignored."""

CACHE_ENV = "LIGHTNING_YOLO_CACHE"
"""Environment variable overriding the cache folder (read at call time)."""

CACHE_SUFFIX = ".npz"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The project's cache folder: ``cache_dir``, else ``$LIGHTNING_YOLO_CACHE``, else ``~/.cache/lightning_yolo``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lightning_yolo"


def label_cache_path(sources: Sequence[str | Path], cache_dir: str | Path | None = None) -> Path:
    """The cache file of a split, named by a hash of its source folders / list files."""
    key = "\n".join(str(Path(s).absolute()) for s in sources)
    return cache_root(cache_dir) / "labels" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}{CACHE_SUFFIX}"


def files_fingerprint(image_files: Sequence[str], label_files: Sequence[str], names: Sequence[str]) -> str:
    """Hash of the cache version, the names and every file's path, size and mtime_ns (missing files included).

    One ``stat`` per file and one hash update over all of them: linear in the number of files.
    """
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, list(names)]).encode())
    stat = os.stat
    parts = []
    for path in (*image_files, *label_files):
        try:
            st = stat(path)
            parts.append(f"{path}\0{st.st_size}:{st.st_mtime_ns}\n")
        except OSError:
            parts.append(f"{path}\0missing\n")
    digest.update("".join(parts).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def load_cache(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The cached arrays when the file reads as a pickle-free ``.npz`` and matches ``fingerprint``, else None."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    version, stored = arrays.get("version"), arrays.get("fingerprint")
    if version is None or version.shape != (1,) or int(version[0]) != CACHE_VERSION:
        return None
    if stored is None or stored.dtype.kind != "U" or stored.shape != () or str(stored) != fingerprint:
        return None
    return arrays


def save_cache(path: Path, arrays: Mapping[str, np.ndarray], fingerprint: str) -> bool:
    """Write the arrays (plus version and fingerprint) atomically (temp file + rename).

    Warns and returns False when the folder is not writable.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, version=np.array([CACHE_VERSION]), fingerprint=np.array(fingerprint), **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        log.warning("label cache not written to %s: %s", path, err)
        return False
    return True
