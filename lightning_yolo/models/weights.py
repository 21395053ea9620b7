"""Weights files: one way in for every kind of file that holds YOLOv5 weights, and state_dict transfer.

:func:`load_weights` reads any of three kinds and returns one :class:`Weights` record (architecture dict,
float32 ``state_dict``, class names, strides):

* official YOLOv5 ``.pt`` files (v6.x, v7.0): pickles of whole ``models.yolo.Model`` objects, read with the
  restricted unpickler of :mod:`lightning_yolo.models.unpickler`, which never imports or runs pickled code;
* lightning_yolo's weights file (written by :func:`save_weights`, e.g. by ``convert``): plain values and tensors;
* lightning_yolo's training checkpoints (``.ckpt``): the EMA weights when the checkpoint has them, else the
  model's, with the architecture and class names from its ``hyper_parameters`` and the strides from the model
  that architecture builds.

The kind is told from the content, not the file name. The globals the pickle names are read from its opcodes
first, running nothing: a pickle of plain data (tensors and containers) is read with ``torch.load(weights_only=
True)`` through :func:`~lightning_yolo.checkpoints.files.read_checkpoint`; any other goes to the restricted
unpickler, which takes YOLOv5's module classes and refuses every other global, naming it.

:func:`build_model_from_weights` turns any such file into a ``DetectionModel`` holding its weights. Every failure
is a :class:`WeightsError` naming the file. Torch only: no Lightning.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_yolo.checkpoints.files import (
    MAX_LISTED,
    atomic_write_bytes,
    mismatched_keys,
    not_a_file,
    read_checkpoint,
)
from lightning_yolo.errors import CheckpointError
from lightning_yolo.models.unpickler import (
    ArchiveError,
    RefusedGlobalError,
    StandIn,
    TensorRef,
    find_data_pickle,
    pickled_globals,
    restricted_load,
)
from lightning_yolo.models.yolo import DetectionModel

__all__ = [
    "FORMAT",
    "VERSION",
    "Weights",
    "WeightsError",
    "build_model_from_weights",
    "checkpoint_weights",
    "count_parameters",
    "load_weights",
    "save_weights",
    "transfer_state_dict",
]

LOGGER = logging.getLogger("lightning_yolo")

FORMAT = "lightning_yolo.weights"
"""Value of the ``format`` key that marks lightning_yolo's weights file."""
VERSION = 1
"""Version of lightning_yolo's weights file that this module writes and reads."""

_MODEL_CLASSES = ("models.yolo.Model", "models.yolo.DetectionModel")
_BUFFER_NAMES = frozenset({"running_mean", "running_var", "num_batches_tracked", "anchors", "anchor_grid", "grid"})
_MAX_DEPTH = 64  # module nesting far beyond any YOLOv5 model; guards against cyclic pickles
_PLAIN_CONTAINERS = frozenset(
    {"collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.bytearray", "_codecs.encode"}
)
_CHECKPOINT_PREFIXES = ("ema.module.", "model.")  # a training checkpoint's EMA weights, else its model's
_NOT_ANY_KIND = ", a lightning_yolo weights file or an official YOLOv5 checkpoint"  # ends read_checkpoint's message


class WeightsError(Exception):
    """A weights file could not be read: missing, empty, truncated, malformed, unsafe or of another kind."""


@dataclass
class Weights:
    """What a weights file holds, whatever its kind.

    Attributes:
        yaml: the architecture dict (``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone``,
            ``head``, ...), as ``DetectionModel`` accepts it.
        state_dict: tensor name (``model.0.conv.weight`` ... ``model.24.anchors``) to CPU tensor; floating tensors
            are float32.
        names: class names, index = class id.
        stride: stride of each detection level in pixels, e.g. ``[8.0, 16.0, 32.0]``.
        meta: ``source`` (``"yolov5"``, ``"lightning_yolo"`` for a weights file, ``"checkpoint"``) and other plain
            values the file held (official files: ``epoch``, ``date``, ``opt``, ...; checkpoints: ``epoch``,
            ``global_step``).
    """

    yaml: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    names: list[str]
    stride: list[float]
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Reading any kind
# --------------------------------------------------------------------------------------------------------------


def load_weights(path: str | Path) -> Weights:
    """Read an official YOLOv5 ``.pt``, a lightning_yolo weights file or a lightning_yolo training checkpoint.

    Args:
        path: the file; its kind is told from its content.

    Returns:
        The weights, floating tensors in float32. A checkpoint gives its EMA weights when it has them.

    Raises:
        WeightsError: the file is missing, damaged or of another kind; a checkpoint lacks its architecture or its
            weights do not fit it; or the pickle names a global outside the allow-list (the message then names
            it, e.g. ``refusing to load x.pt: global 'posix.system' is not allowed``).
    """
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[Weights, DetectionModel | None]:
    """The weights of ``path`` and, for a checkpoint, the model built to check them (it gives the strides)."""
    with _open_archive(path) as archive:
        if _pickles_objects(archive, path):
            return _read_official(archive, path), None
    try:
        obj = read_checkpoint(path, hint=_NOT_ANY_KIND)
    except CheckpointError as exc:
        raise WeightsError(f"cannot load {path}: {str(exc).removeprefix(f'{path}: ')}") from None
    if obj.get("format") == FORMAT:
        return _from_weights_file(obj, path), None
    return _from_checkpoint(obj, path)


def _open_archive(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a PyTorch zip checkpoint, or raise a :class:`WeightsError` saying what is wrong."""
    if not path.is_file():  # stat only: a FIFO is never opened (that would block)
        raise WeightsError(f"cannot load {path}: {not_a_file(path)}")
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


def _pickles_objects(archive: zipfile.ZipFile, path: Path) -> bool:
    """Whether the pickle names globals other than torch's tensor machinery and plain containers.

    Official files name YOLOv5's module classes; a hostile file names what it would run. Both go to the restricted
    unpickler, which takes the first and refuses the second by name.
    """
    try:
        names = pickled_globals(archive)
    except (ArchiveError, zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(f"cannot load {path}: {exc}") from exc
    plain = (n in _PLAIN_CONTAINERS or (n.startswith("torch.") and not n.startswith("torch.nn.")) for n in names)
    return not all(plain)


# --------------------------------------------------------------------------------------------------------------
# Official YOLOv5 checkpoints
# --------------------------------------------------------------------------------------------------------------


def _read_official(archive: zipfile.ZipFile, path: Path) -> Weights:
    """Import an official YOLOv5 checkpoint (``ema`` when not ``None``, else ``model``), running none of its code."""
    try:
        obj = restricted_load(archive)
    except ArchiveError as exc:
        verb = "refusing to load" if isinstance(exc, RefusedGlobalError) else "cannot load"
        raise WeightsError(f"{verb} {path}: {exc}") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # e.g. a bad CRC in a tensor record
        raise WeightsError(f"cannot load {path}: corrupt archive ({exc})") from exc
    model = _pick_model(obj, path)
    try:
        return _from_official_model(model, obj if isinstance(obj, dict) else {})
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


def _from_official_model(model: StandIn, top: dict) -> Weights:
    """The weights of an official model stand-in; ``top`` is the checkpoint dict around it (its values go to meta)."""
    attrs = _module_attrs(model)
    state_dict: dict[str, torch.Tensor] = {}
    _collect_tensors(model, "", state_dict, depth=0)
    yaml = _plain(attrs.get("yaml"))
    if not isinstance(yaml, dict):
        raise ArchiveError("the model has no architecture dict ('yaml' attribute)")
    meta = {k: _plain(v) for k, v in top.items() if isinstance(k, str) and k not in ("model", "ema", "optimizer")}
    meta["source"] = "yolov5"
    return Weights(yaml, state_dict, _names(attrs.get("names")), _stride(attrs, state_dict), meta)


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
# lightning_yolo's weights file and training checkpoints
# --------------------------------------------------------------------------------------------------------------


def save_weights(
    path: str | Path,
    yaml: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    names: list[str],
    stride: list[float],
) -> Path:
    """Write lightning_yolo's weights file.

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
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(buffer.getvalue(), path)
    return path


def _from_weights_file(obj: dict[str, Any], path: Path) -> Weights:
    """Validate the dict read from lightning_yolo's weights file."""
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
    return Weights(yaml, tensors, names, stride, {"source": "lightning_yolo", "version": VERSION})


def checkpoint_weights(checkpoint: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a read lightning_yolo training checkpoint, with their prefix removed.

    Args:
        checkpoint: the dict :func:`~lightning_yolo.checkpoints.files.read_checkpoint` returns.
        path: the file it came from, for the message.

    Returns:
        The EMA weights (``ema.module.*``) when present, else the trained model's (``model.*``), keyed as in
        ``DetectionModel.state_dict()``.

    Raises:
        WeightsError: the checkpoint holds neither.
    """
    state = checkpoint["state_dict"]
    for prefix in _CHECKPOINT_PREFIXES:
        weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if weights:
            return weights
    raise WeightsError(f"cannot load {path}: the checkpoint holds no model weights ('ema.module.*' or 'model.*')")


def _from_checkpoint(checkpoint: dict[str, Any], path: Path) -> tuple[Weights, DetectionModel]:
    """A training checkpoint's weights, and the model its ``hyper_parameters.cfg`` builds, holding them."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("cfg"), dict):
        raise WeightsError(f"cannot load {path}: the checkpoint has no architecture ('hyper_parameters.cfg')")
    state_dict = {k: _to_float32(v) for k, v in checkpoint_weights(checkpoint, path).items()}
    model = _new_model(hparams["cfg"], path)
    _load_exactly(model, state_dict, path)
    names = [str(n) for n in hparams["names"]] if hparams.get("names") else list(model.names)
    meta = {"source": "checkpoint", "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}
    return Weights(model.yaml, state_dict, names, model.stride.tolist(), meta), model


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


def build_model_from_weights(path: str | Path, nc: int | None = None) -> DetectionModel:
    """Build the ``DetectionModel`` a weights file of any kind describes, holding its weights (predict and export
    load their model with this; training transfers :func:`load_weights`' ``state_dict`` into its own architecture).

    With ``nc`` unset or equal to the file's, every tensor must match (else :class:`WeightsError` lists the
    mismatches) and the file's class names are kept. With another ``nc``, matching tensors are transferred and
    the detection head starts fresh.

    Args:
        path: official YOLOv5 ``.pt``, lightning_yolo weights file or training checkpoint.
        nc: number of classes for the new model; ``None`` keeps the file's.

    Returns:
        The model in float32, train mode.
    """
    path = Path(path)
    weights, model = _read(path)
    if nc is not None and nc != weights.yaml.get("nc"):
        model = _new_model(weights.yaml, path, nc)
        transfer_state_dict(model, weights.state_dict)
        return model
    if model is None:  # a checkpoint's model was built (and checked) while reading it
        model = _new_model(weights.yaml, path)
        _load_exactly(model, weights.state_dict, path)
    model.names = list(weights.names)
    return model


def _new_model(yaml: dict[str, Any], path: Path, nc: int | None = None) -> DetectionModel:
    """A fresh model of the architecture a file describes (for ``nc`` classes when given)."""
    try:
        return DetectionModel(yaml, nc=nc)
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # a damaged or hand-made architecture dict
        raise WeightsError(f"cannot load {path}: its architecture cannot be built: {exc}") from exc


def _load_exactly(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state_dict`` into ``model``; both must hold the same tensor names and shapes."""
    problems = mismatched_keys(model.state_dict(), state_dict)
    if problems:
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise WeightsError(
            f"cannot load {path}: the weights do not fit the architecture the file describes, "
            f"{len(problems)} mismatched keys: {'; '.join(problems[:MAX_LISTED])}{more}"
        )
    model.load_state_dict(state_dict)
