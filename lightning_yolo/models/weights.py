"""Weights files: safe import of official YOLOv5 ``.pt`` checkpoints, lightning_yolo's own weights file, and
state_dict transfer.

Two formats are read:

* official YOLOv5 ``.pt`` files (v6.x, v7.0): pickles of whole ``models.yolo.Model`` objects. They are read with
  the restricted unpickler of :mod:`lightning_yolo.models.unpickler`, which never imports or runs pickled code;
* lightning_yolo's own weights file (written by :func:`save_weights`): a dict of plain values and tensors that
  ``torch.load(..., weights_only=True)`` reads with no allow-list.

Both come back as an :class:`OfficialCheckpoint` (the architecture dict, a float32 ``state_dict``, class names,
strides). Every failure is a :class:`WeightsError` naming the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightning_yolo.models.unpickler import (
    ArchiveError,
    RefusedGlobalError,
    StandIn,
    TensorRef,
    find_data_pickle,
    restricted_load,
)

if TYPE_CHECKING:
    from lightning_yolo.models.yolo import DetectionModel

__all__ = [
    "FORMAT",
    "VERSION",
    "OfficialCheckpoint",
    "WeightsError",
    "build_model_from_weights",
    "count_parameters",
    "load_official",
    "load_weights",
    "save_weights",
    "transfer_state_dict",
]

LOGGER = logging.getLogger("lightning_yolo")

FORMAT = "lightning_yolo.weights"
"""Value of the ``format`` key that marks lightning_yolo's own weights file."""
VERSION = 1
"""Version of lightning_yolo's own weights file that this module writes and reads."""

_MODEL_CLASSES = ("models.yolo.Model", "models.yolo.DetectionModel")
_BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked", "anchors", "anchor_grid", "grid"})
_MAX_DEPTH = 64  # module nesting far beyond any YOLOv5 model; guards against cyclic pickles


class WeightsError(Exception):
    """A weights file could not be read: missing, empty, truncated, malformed, unsafe or of another kind."""


@dataclass
class OfficialCheckpoint:
    """What a weights file holds, official YOLOv5 or lightning_yolo's own.

    Attributes:
        yaml: the architecture dict (``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone``,
            ``head``, ...), as ``DetectionModel`` accepts it.
        state_dict: tensor name (``model.0.conv.weight`` ... ``model.24.anchors``) to CPU tensor; floating tensors
            are float32.
        names: class names, index = class id.
        stride: stride of each detection level in pixels, e.g. ``[8.0, 16.0, 32.0]``.
        meta: other plain values the file held (for official files ``epoch``, ``date``, ``opt``, ...) plus
            ``source``: ``"yolov5"`` or ``"lightning_yolo"``.
    """

    yaml: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    names: list[str]
    stride: list[float]
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Opening files
# --------------------------------------------------------------------------------------------------------------


def _open_archive(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a PyTorch zip checkpoint, or raise a :class:`WeightsError` saying what is wrong."""
    if not path.is_file():
        raise WeightsError(f"cannot load {path}: no such file")
    if path.stat().st_size == 0:
        raise WeightsError(f"cannot load {path}: the file is empty")
    if not zipfile.is_zipfile(path):
        raise WeightsError(
            f"cannot load {path}: not a PyTorch checkpoint (no zip archive; the file may be truncated, "
            "of another kind, or in PyTorch's legacy pre-1.6 format)"
        )
    try:
        archive = zipfile.ZipFile(path)
        find_data_pickle(archive)
    except (zipfile.BadZipFile, OSError, ArchiveError) as exc:
        raise WeightsError(f"cannot load {path}: {exc}") from exc
    return archive


def _restricted_read(path: Path) -> Any:
    """The unpickled contents of ``path`` with stand-ins for module objects (see :func:`restricted_load`)."""
    with _open_archive(path) as archive:
        try:
            return restricted_load(archive)
        except ArchiveError as exc:
            verb = "refusing to load" if isinstance(exc, RefusedGlobalError) else "cannot load"
            raise WeightsError(f"{verb} {path}: {exc}") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # e.g. a bad CRC in a tensor record
            raise WeightsError(f"cannot load {path}: corrupt archive ({exc})") from exc


# --------------------------------------------------------------------------------------------------------------
# Official YOLOv5 checkpoints
# --------------------------------------------------------------------------------------------------------------


def load_official(path: str | Path) -> OfficialCheckpoint:
    """Import an official YOLOv5 ``.pt`` checkpoint without running any of its pickled code.

    The ``ema`` model is used when present and not ``None``, else ``model``.

    Args:
        path: a YOLOv5 v6.x/v7.0 checkpoint such as ``yolov5n.pt``.

    Returns:
        The checkpoint, with floating tensors converted to float32.

    Raises:
        WeightsError: the file is missing, damaged, not a YOLOv5 detection checkpoint, or names a global outside
            the allow-list (the message then names it, e.g. ``global 'posix.system' is not allowed``).
    """
    path = Path(path)
    obj = _restricted_read(path)
    model = _pick_model(obj, path)
    try:
        return _checkpoint_from_model(model, obj if isinstance(obj, dict) else {})
    except ArchiveError as exc:
        raise WeightsError(f"cannot load {path}: {exc}") from exc


def _pick_model(obj: Any, path: Path) -> StandIn:
    """The model stand-in of a checkpoint dict (``ema`` first, then ``model``) or a bare pickled model."""
    model = obj
    if isinstance(obj, dict):
        model = obj.get("ema") if obj.get("ema") is not None else obj.get("model")
    if not isinstance(model, StandIn):
        raise WeightsError(f"cannot load {path}: no YOLOv5 model found (expected a dict with 'model' or 'ema')")
    if model.global_name not in _MODEL_CLASSES:
        raise WeightsError(f"cannot load {path}: it holds a {model.global_name}; only detection models are supported")
    return model


def _checkpoint_from_model(model: StandIn, top: dict) -> OfficialCheckpoint:
    attrs = _module_attrs(model)
    state_dict: dict[str, torch.Tensor] = {}
    _collect_tensors(model, "", state_dict, depth=0)
    yaml = _plain(attrs.get("yaml"))
    if not isinstance(yaml, dict):
        raise ArchiveError("the model has no architecture dict ('yaml' attribute)")
    meta = {k: _plain(v) for k, v in top.items() if isinstance(k, str) and k not in ("model", "ema", "optimizer")}
    meta["source"] = "yolov5"
    return OfficialCheckpoint(yaml, state_dict, _names(attrs.get("names")), _stride(attrs, state_dict), meta)


def _module_attrs(node: StandIn) -> dict:
    """The ``__dict__`` a pickled ``nn.Module`` was built with."""
    if not isinstance(node.state, dict):
        raise ArchiveError(f"pickled {node.global_name} has no attribute dict")
    return node.state


def _collect_tensors(node: StandIn, prefix: str, out: dict[str, torch.Tensor], depth: int) -> None:
    """Add the parameters and persistent buffers of ``node`` and its children to ``out``, in state_dict order."""
    if depth > _MAX_DEPTH:
        raise ArchiveError("modules nested too deeply (cyclic pickle?)")
    attrs = _module_attrs(node)
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, ref in (attrs.get(group) or {}).items():
            if ref is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(ref, TensorRef):
                raise ArchiveError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = _to_float32(ref.tensor)
    for name, child in (attrs.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, StandIn):
            raise ArchiveError(f"submodule {prefix}{name} is not a module")
        _collect_tensors(child, f"{prefix}{name}.", out, depth + 1)


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy that owns its memory; floating tensors become float32, integer ones keep their dtype."""
    return tensor.float().contiguous() if tensor.is_floating_point() else tensor.clone().contiguous()


def _names(value: Any) -> list[str]:
    """Class names from a list or an ``{index: name}`` dict."""
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value)]
    if not isinstance(value, list | tuple) or not all(isinstance(n, str | int) for n in value):
        raise ArchiveError("the model has no list of class names ('names' attribute)")
    return [str(n) for n in value]


def _stride(attrs: dict, state_dict: dict[str, torch.Tensor]) -> list[float]:
    """Strides from the model's ``stride`` attribute."""
    stride = attrs.get("stride")
    if isinstance(stride, TensorRef):
        return [float(s) for s in stride.tensor.flatten().tolist()]
    if isinstance(stride, list | tuple) and all(isinstance(s, int | float) for s in stride):
        return [float(s) for s in stride]
    raise ArchiveError("the model has no strides ('stride' attribute)")


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain Python data: containers, strings and numbers; tensors become lists, stand-ins dicts."""
    if depth > 32:
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, TensorRef):
        return value.tensor.tolist() if value.tensor.numel() <= 1024 else None
    if isinstance(value, StandIn) and isinstance(value.state, dict):  # e.g. an argparse.Namespace of options
        return _plain(value.state, depth + 1)
    return repr(value)


# --------------------------------------------------------------------------------------------------------------
# lightning_yolo's own weights file
# --------------------------------------------------------------------------------------------------------------


def save_weights(
    path: str | Path,
    yaml: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    names: list[str],
    stride: list[float],
) -> Path:
    """Write lightning_yolo's own weights file.

    The file holds ``{"format": "lightning_yolo.weights", "version": 1, "yaml", "state_dict", "names", "stride"}``
    of plain types and CPU tensors, so ``torch.load(path, weights_only=True)`` reads it with no allow-list. The
    write is atomic: a partial file never replaces an existing one.

    Args:
        path: output file.
        yaml: architecture dict.
        state_dict: tensors by name.
        names: class names.
        stride: strides in pixels.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "yaml": _plain(yaml),
        "state_dict": {str(k): v.detach().cpu().clone().contiguous() for k, v in state_dict.items()},
        "names": [str(n) for n in names],
        "stride": [float(s) for s in stride],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _from_project_file(obj: Any, path: Path) -> OfficialCheckpoint:
    """Validate the dict read from lightning_yolo's own weights file."""
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise WeightsError(f"cannot load {path}: neither a lightning_yolo weights file nor a YOLOv5 checkpoint")
    if obj.get("version") != VERSION:
        raise WeightsError(f"cannot load {path}: weights file version {obj.get('version')!r}, expected {VERSION}")
    state_dict, yaml = obj.get("state_dict"), obj.get("yaml")
    ok = isinstance(state_dict, dict) and all(isinstance(v, torch.Tensor) for v in state_dict.values())
    if not ok or not isinstance(yaml, dict):
        raise WeightsError(f"cannot load {path}: the weights file lacks 'yaml' or a tensor 'state_dict'")
    try:
        names, stride = _names(obj.get("names")), _stride(obj, state_dict)
    except ArchiveError as exc:
        raise WeightsError(f"cannot load {path}: {exc}") from exc
    tensors = {k: _to_float32(v) for k, v in state_dict.items()}
    return OfficialCheckpoint(yaml, tensors, names, stride, {"source": "lightning_yolo", "version": VERSION})


def load_weights(path: str | Path) -> OfficialCheckpoint:
    """Read either lightning_yolo's own weights file or an official YOLOv5 ``.pt`` checkpoint.

    The file is first read with ``torch.load(weights_only=True)``; when that refuses the pickle (an official
    checkpoint pickles whole modules), it is imported through the restricted unpickler instead.

    Raises:
        WeightsError: as for :func:`load_official`, or the file is a PyTorch file of another kind.
    """
    path = Path(path)
    _open_archive(path).close()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return load_official(path)
    except Exception as exc:  # torch reports damaged archives with RuntimeError and others
        raise WeightsError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    return _from_project_file(obj, path)


# --------------------------------------------------------------------------------------------------------------
# Using weights
# --------------------------------------------------------------------------------------------------------------


def count_parameters(state_dict: dict[str, torch.Tensor]) -> int:
    """Number of learnable values in a YOLOv5 ``state_dict``.

    Buffers are told apart by name (BatchNorm statistics, Detect anchors and grids), as a state_dict does not
    record which tensors were parameters.
    """
    return sum(t.numel() for k, t in state_dict.items() if k.rsplit(".", 1)[-1] not in _BUFFER_NAMES)


def transfer_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy into ``model`` every tensor of ``state_dict`` whose name and shape match; leave the rest as they are.

    Logs ``transferred X/Y tensors`` on the ``lightning_yolo`` logger.

    Returns:
        ``(transferred, total)``: tensors copied, and tensors in ``model.state_dict()``.
    """
    own = model.state_dict()
    matched = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    LOGGER.info("transferred %d/%d tensors", len(matched), len(own))
    return len(matched), len(own)


def _mismatched_keys(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Model tensors that ``state_dict`` lacks or holds with another shape."""
    mismatched = []
    for key, tensor in model.state_dict().items():
        if key not in state_dict:
            mismatched.append(f"{key} (missing)")
        elif state_dict[key].shape != tensor.shape:
            mismatched.append(f"{key} {tuple(state_dict[key].shape)} vs {tuple(tensor.shape)}")
    return mismatched


def build_model_from_weights(path: str | Path, nc: int | None = None) -> DetectionModel:
    """Build a ``DetectionModel`` from a weights file's architecture and load its weights.

    With ``nc`` unset or equal to the file's, every tensor must match (else :class:`WeightsError` lists the
    mismatches) and the file's class names are kept. With another ``nc``, matching tensors are transferred and
    the detection head starts fresh.

    Args:
        path: official YOLOv5 ``.pt`` or lightning_yolo weights file.
        nc: number of classes for the new model; ``None`` keeps the file's.

    Returns:
        The model in float32, train mode.
    """
    from lightning_yolo.models.yolo import DetectionModel  # lazy: keeps weights I/O usable without the model code

    weights = load_weights(path)
    same_nc = nc is None or nc == weights.yaml.get("nc")
    model = DetectionModel(dict(weights.yaml), ch=int(weights.yaml.get("ch", 3)), nc=nc)
    if not same_nc:
        transfer_state_dict(model, weights.state_dict)
        return model
    mismatched = _mismatched_keys(model, weights.state_dict)
    if mismatched:
        shown = ", ".join(mismatched[:10]) + (" ..." if len(mismatched) > 10 else "")
        raise WeightsError(f"{path} does not fit the architecture it describes: {len(mismatched)} tensors: {shown}")
    model.load_state_dict({k: weights.state_dict[k] for k in model.state_dict()})
    model.names = list(weights.names)
    return model
