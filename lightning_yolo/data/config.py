"""Dataset yaml files: parse, validate and resolve them, list their images and pair images with labels.

A dataset yaml is the YOLOv5 format, read unchanged::

    path: ../datasets/coco128   # dataset root; relative to this yaml's folder; absent -> this yaml's folder
    train: images/train2017     # folder, list of folders, or a .txt file listing images (one per line)
    val: images/train2017
    test:                       # optional
    nc: 80                      # optional; checked against names
    names: {0: person, 1: bicycle}   # or a list: [person, bicycle]
    download: ...               # ignored: never executed, never fetched

The yaml is read by :func:`lightning_yolo.settings.load_yaml` (safe loader; oversized files, deep nesting and alias
bombs refused). Every problem raises :class:`DatasetError` with a message naming the yaml and key (a class name as
``names[3]``), or the path (a list entry as ``list.txt:line``). A list file none of whose lines names an image is
refused without quoting any of it: ``train: ../../etc/passwd`` must not print the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_yolo.errors import ConfigError
from lightning_yolo.settings import load_yaml

log = logging.getLogger(__name__)

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
"""Image file suffixes a dataset may use (lower case, without the dot), as YOLOv5."""

SPLITS = ("train", "val", "test")
_MAX_LISTED = 10  # bad list-file lines quoted in one error message


class DatasetError(Exception):
    """A dataset definition or its files cannot be used; the message names the file and key or line."""


@dataclass(frozen=True)
class DatasetConfig:
    """A validated dataset yaml.

    Attributes:
        yaml_path: The yaml file, absolute.
        root: The resolved ``path:`` (dataset root), absolute.
        names: Class names, index = class id.
        splits: ``split name -> sources``; each source is an existing folder or list file. ``test`` only when set.
    """

    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)


def is_image_file(path: str | Path) -> bool:
    """True when the file name ends in one of :data:`IMG_FORMATS` (case-insensitive)."""
    return str(path).rsplit(".", 1)[-1].lower() in IMG_FORMATS


def image_to_label_path(image: str | Path) -> Path:
    """The label file of an image, as YOLOv5 pairs them.

    The last ``/images/`` folder in the path becomes ``/labels/`` and the suffix becomes ``.txt``;
    an image with no ``images`` folder in its path has its label file beside it.
    """
    return Path(image_to_label_file(str(image)))


def image_to_label_file(image: str) -> str:
    """:func:`image_to_label_path` on a string, to a string (no ``Path`` objects: cheap for 100,000s of files)."""
    sep = os.sep
    head, found, tail = image.rpartition(f"{sep}images{sep}")
    text = f"{head}{sep}labels{sep}{tail}" if found else image
    return text.rsplit(".", 1)[0] + ".txt"


def read_dataset_yaml(yaml_path: str | Path) -> dict[str, Any]:
    """Read a dataset yaml with :func:`lightning_yolo.settings.load_yaml` into a mapping.

    Raises:
        DatasetError: the file is missing, unreadable, not valid YAML (``!!python`` tags included), too large,
            too deeply nested, an alias bomb, or not a mapping. The message starts with the path.
    """
    path = Path(yaml_path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset yaml not found")
    try:
        data = load_yaml(path)
    except ConfigError as err:
        reason = str(err).removeprefix(f"{path}: ")
        raise DatasetError(f"{path}: not a valid dataset yaml: {reason}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with keys train, val, names; got {type(data).__name__}")
    return data


def load_dataset_config(yaml_path: str | Path) -> DatasetConfig:
    """Parse and validate a dataset yaml; check that every split source exists.

    Cheap: no image is listed or opened. Raises :class:`DatasetError` naming the yaml and key.
    """
    path = Path(yaml_path).expanduser().resolve()
    data = read_dataset_yaml(path)
    for key in ("train", "val", "names"):
        if data.get(key) in (None, "", [], {}):
            raise DatasetError(f"{path}: key '{key}' is missing or empty")
    names = parse_names(data["names"], path)
    check_nc(data.get("nc"), names, path)
    if data.get("download") is not None:
        log.info("%s: key 'download' ignored: it is never run or fetched; download the data yourself", path)
    root = resolve_root(data.get("path"), path)
    splits = {key: resolve_sources(data[key], root, key, path) for key in SPLITS if data.get(key) not in (None, "")}
    return DatasetConfig(yaml_path=path, root=root, names=names, splits=splits)


def parse_names(names: Any, yaml_path: Path) -> list[str]:
    """Class names from a list or an ``{index: name}`` mapping whose keys are exactly the integers 0..n-1.

    Every name must be a string: ``names: [1, 2]``, a nested list, a mapping or null is refused naming the entry
    (YOLOv5 would stringify them silently).
    """
    if isinstance(names, (list, tuple)):
        values = list(names)
    elif isinstance(names, dict):
        bad = [k for k in names if not isinstance(k, int) or isinstance(k, bool)]
        if bad:
            raise DatasetError(f"{yaml_path}: key 'names' has non-integer keys {bad[:5]}; use 0: person, 1: car, ...")
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"{yaml_path}: key 'names' keys must be 0..{len(names) - 1} with none missing")
        values = [names[i] for i in range(len(names))]
    else:
        raise DatasetError(f"{yaml_path}: key 'names' must be a list or an {{index: name}} mapping")
    for index, name in enumerate(values):
        if not isinstance(name, str):
            raise DatasetError(f"{yaml_path}: key 'names': names[{index}]: must be a string, got {_kind(name)}")
    return values


def _kind(value: Any) -> str:
    """What a YAML value is, for a message (scalars with their value, containers without their content)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value}); quote it if it is a name"
    if isinstance(value, (int, float)):
        return f"a number ({value!r}); quote it if it is a name: '{value!r}'"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def check_nc(nc: Any, names: list[str], yaml_path: Path) -> None:
    """Check an optional ``nc`` against the names."""
    if nc is None:
        return
    if not isinstance(nc, int) or isinstance(nc, bool):
        raise DatasetError(f"{yaml_path}: key 'nc' must be an integer, got {nc!r}")
    if nc != len(names):
        raise DatasetError(f"{yaml_path}: key 'nc' is {nc} but key 'names' has {len(names)} entries")


def resolve_root(path_value: Any, yaml_path: Path) -> Path:
    """The dataset root: ``path:`` resolved against the yaml's folder (absent -> the yaml's folder)."""
    if path_value in (None, ""):
        return yaml_path.parent
    if not isinstance(path_value, str):
        raise DatasetError(f"{yaml_path}: key 'path' must be a string, got {path_value!r}")
    root = Path(path_value).expanduser()
    return (root if root.is_absolute() else yaml_path.parent / root).resolve()


def resolve_sources(value: Any, root: Path, key: str, yaml_path: Path) -> list[Path]:
    """Resolve one split (a string or a list of strings) against the root; every source must exist."""
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(e, str) and e for e in entries):
        raise DatasetError(f"{yaml_path}: key '{key}' must be a path or a list of paths, got {value!r}")
    sources = []
    for entry in entries:
        source = _resolve_entry(entry, root)
        if not source.exists():
            raise DatasetError(f"{yaml_path}: key '{key}': path not found: {source}")
        sources.append(source)
    return sources


def _resolve_entry(entry: str, root: Path) -> Path:
    """Resolve a split entry; like YOLOv5, a missing ``../x`` falls back to ``root/x``."""
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path
    resolved = (root / path).resolve()
    if not resolved.exists() and entry.startswith("../"):
        resolved = (root / entry[3:]).resolve()
    return resolved


def list_images(sources: list[Path], root: Path | None = None, what: str = "split") -> list[Path]:
    """All image files of a split, sorted, without duplicates (:func:`list_image_files` as ``Path`` objects)."""
    return [Path(f) for f in list_image_files(sources, root, what)]


def list_image_files(sources: list[Path], root: Path | None = None, what: str = "split") -> list[str]:
    """All image files of a split as path strings, sorted, without duplicates.

    Args:
        sources: Folders (searched recursively for :data:`IMG_FORMATS`; symlinked folders are not followed,
            symlinked files are) and list files (one image per line; a relative line resolves against the list
            file's folder, else against ``root``).
        root: The dataset root, the second place relative list lines are looked up.
        what: Names the split in error messages.

    Raises:
        DatasetError: a source is missing, holds no image, or a list line is not an existing image
            (named as ``list.txt:line``).
    """
    files: list[str] = []
    for source in sources:
        found = _images_in_folder(str(source)) if source.is_dir() else [str(p) for p in _images_in_list(source, root)]
        if not found:
            raise DatasetError(f"{source}: no images found for {what} (formats: {', '.join(IMG_FORMATS)})")
        files += found
    return sorted(set(files))


def _images_in_folder(folder: str) -> list[str]:
    """Image files under ``folder``, by ``os.scandir`` (file types come with the listing: no ``stat`` per file)."""
    found, pending = [], [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif is_image_file(entry.name) and entry.is_file():
                        found.append(entry.path)
        except OSError:  # an unreadable folder is skipped, as pathlib's rglob skips it
            continue
    return found


def _images_in_list(list_file: Path, root: Path | None) -> list[Path]:
    """The images of a list file; its lines are quoted in messages only when they name an image file."""
    if not list_file.is_file():
        reason = "not a regular file" if list_file.exists() else "not found"
        raise DatasetError(f"{list_file}: {reason}")
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{list_file}: cannot read list file: {err}") from None
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]
    if entries and not any(is_image_file(entry) for _, entry in entries):
        # e.g. ``train: ../../etc/passwd``: say what the file is not, never what it holds
        raise DatasetError(
            f"{list_file}: not a list of images: none of its {len(entries)} lines names an image file "
            f"(formats: {', '.join(IMG_FORMATS)})"
        )
    files, problems = [], []
    for number, entry in entries:
        path, problem = _resolve_list_line(entry, list_file.parent, root)
        if problem:
            problems.append(f"{list_file}:{number}: {problem}")
        else:
            files.append(path)
    if problems:
        more = f"\n... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DatasetError("bad image list entries:\n" + "\n".join(problems[:_MAX_LISTED]) + more)
    return files


def _resolve_list_line(entry: str, parent: Path, root: Path | None) -> tuple[Path, str]:
    """Resolve one list line; returns ``(path, problem)`` where ``problem`` is empty when the line is usable.

    A line that does not name an image file is not quoted (it may be anything: a list file can be any file).
    """
    path = Path(entry).expanduser()
    if not path.is_absolute():
        candidates = [parent / path] + ([root / path] if root is not None else [])
        path = next((c for c in candidates if c.exists()), candidates[0])
    if not is_image_file(path.name):
        return path, f"not an image file name (formats: {', '.join(IMG_FORMATS)})"
    if not path.is_file():
        return path, f"image not found: {path}"
    return Path(os.path.normpath(path.absolute())), ""
