"""A restricted unpickler for PyTorch zip checkpoints that never imports or runs the pickled classes.

Official YOLOv5 ``.pt`` files pickle whole ``nn.Module`` objects, so loading them the ordinary way would import
(and run) whatever code the pickle names. This module reads such a file with a ``pickle.Unpickler`` whose
``find_class`` hands out only:

* inert stand-ins (:class:`StandIn` subclasses) for the known YOLOv5 and ``torch.nn`` classes: they record the
  arguments and state the pickle gives them and do nothing else;
* lightning_yolo's own rebuild functions for tensors, storages, sizes, paths and numpy scalars, which check their
  arguments and return plain values (tensors come wrapped in :class:`TensorRef`);
* a few harmless builtins (``set``, ``frozenset``, ``collections.OrderedDict``).

Any other global is refused with :class:`RefusedGlobalError` naming it. Tensor data is read from the archive's
``data/<key>`` records with :func:`torch.frombuffer`; no torch loading code runs on the pickle.
"""

from __future__ import annotations

import collections
import io
import pathlib
import pickle
import pickletools
import re
import sys
import zipfile
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = [
    "ArchiveError",
    "RefusedGlobalError",
    "StandIn",
    "StorageType",
    "TensorRef",
    "find_data_pickle",
    "pickled_globals",
    "restricted_load",
]


class ArchiveError(Exception):
    """The file is not a well-formed PyTorch zip checkpoint, or its pickle is malformed."""


class RefusedGlobalError(ArchiveError):
    """The pickle names a global that is not on the allow-list.

    Attributes:
        name: the refused global as ``module.qualname``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"global '{name}' is not allowed")
        self.name = name


# --------------------------------------------------------------------------------------------------------------
# Inert stand-ins
# --------------------------------------------------------------------------------------------------------------


class _SealedType(type):
    """Metaclass of the stand-ins: a pickle cannot set attributes (say ``__call__``) on a stand-in class."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise ArchiveError(f"cannot set attribute {name!r} on stand-in class {cls.__name__}")

    def __delattr__(cls, name: str) -> None:
        raise ArchiveError(f"cannot delete attribute {name!r} of stand-in class {cls.__name__}")


class StandIn(metaclass=_SealedType):
    """Inert record of a pickled object whose real class is never imported.

    Creating one (via ``NEWOBJ``, ``REDUCE`` or ``INST``) only stores the arguments; ``BUILD`` only stores the
    state. Stand-ins have no ``__call__``, ``__getattr__`` or container methods, so a pickle cannot make them run
    anything.

    Attributes:
        global_name: the pickled class as ``module.qualname`` (a class attribute of each generated subclass).
        args: positional arguments given at creation.
        state: whatever ``BUILD`` passed (for ``nn.Module`` objects, their ``__dict__``), else ``None``.
    """

    __slots__ = ("args", "state")
    global_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        self = super().__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Arguments were recorded by __new__; accepting them here keeps REDUCE/INST from failing.
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.global_name}>"


def _standin_class(global_name: str) -> type[StandIn]:
    """A fresh :class:`StandIn` subclass labelled with ``global_name``."""
    short = global_name.rsplit(".", 1)[-1]
    return type(short, (StandIn,), {"__slots__": (), "global_name": global_name})


class _Sealed:
    """Base of the allow-list's own objects: ``BUILD`` cannot change them and they have no ``__dict__``."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise ArchiveError(f"cannot set state on {self!r}")


class StorageType(_Sealed):
    """Marker for a pickled storage class such as ``torch.HalfStorage``; only valid inside a persistent id."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"<storage type torch.{self.name}>"


class _Rebuilder(_Sealed):
    """One of the functions below, as the pickle sees it: callable, but with no attributes it could rewrite."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def __repr__(self) -> str:
        return f"<rebuild function {self.func.__name__}>"


class TensorRef:
    """A rebuilt tensor, wrapped so the pickle cannot ``BUILD`` (``__setstate__``) into a real ``torch.Tensor``."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __setstate__(self, state: Any) -> None:
        # Parameters pickled with extra Python state end up here; that state is not needed for weights.
        return None

    def __repr__(self) -> str:
        return f"TensorRef({tuple(self.tensor.shape)}, {self.tensor.dtype})"


# --------------------------------------------------------------------------------------------------------------
# Rebuild functions: the only callables a pickle can reach. Each validates its arguments.
# --------------------------------------------------------------------------------------------------------------


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(type(v) is int and v >= 0 for v in value):
        raise ArchiveError(f"bad tensor {what}: {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> TensorRef:
    """Rebuild a tensor view of a flat storage tensor (``torch._utils._rebuild_tensor[_v2]``)."""
    if not isinstance(storage, TensorRef) or storage.tensor.dim() != 1:
        raise ArchiveError("tensor rebuild without a storage")
    if type(offset) is not int or offset < 0:
        raise ArchiveError(f"bad tensor offset: {offset!r}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise ArchiveError(f"tensor size {size} and stride {stride} differ in length")
    flat = storage.tensor
    if all(size):  # an empty tensor touches no storage
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= flat.numel():
            raise ArchiveError(f"tensor of size {size} reaches past its storage of {flat.numel()} elements")
    return TensorRef(flat.as_strided(size, stride, offset))


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, *_state: Any) -> TensorRef:
    """Parameters load as plain tensors (``torch._utils._rebuild_parameter[_with_state]``)."""
    if not isinstance(data, TensorRef):
        raise ArchiveError("parameter rebuild without a tensor")
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> TensorRef:
    """Tensors carrying Python attributes (``torch._tensor._rebuild_from_type_v2``); only our rebuilders run."""
    allowed = isinstance(func, _Rebuilder) and (func.func is _rebuild_tensor or func.func is _rebuild_parameter)
    if not allowed or not isinstance(args, tuple):
        raise ArchiveError(f"tensor rebuild through a function that is not allowed: {func!r}")
    return func(*args)


def _rebuild_size(dims: Any = ()) -> tuple[int, ...]:
    """``torch.Size`` becomes a tuple of ints."""
    return _int_tuple(dims, "torch.Size")


def _rebuild_device(kind: Any, index: Any = None) -> str:
    """``torch.device`` becomes its string form; weights always load on the CPU."""
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise ArchiveError(f"bad torch.device arguments: {kind!r}, {index!r}")
    return kind if index is None else f"{kind}:{index}"


def _rebuild_posix_path(*parts: Any) -> str:
    """``pathlib`` POSIX paths become strings (pure path arithmetic, no file-system access)."""
    if not all(isinstance(p, str) for p in parts):
        raise ArchiveError(f"bad path parts: {parts!r}")
    return str(pathlib.PurePosixPath(*parts))


def _rebuild_windows_path(*parts: Any) -> str:
    """``pathlib`` Windows paths become strings."""
    if not all(isinstance(p, str) for p in parts):
        raise ArchiveError(f"bad path parts: {parts!r}")
    return str(pathlib.PureWindowsPath(*parts))


def _rebuild_numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` becomes a Python number (numeric dtypes only)."""
    if not isinstance(dtype, StandIn) or dtype.global_name != "numpy.dtype" or not isinstance(data, bytes):
        raise ArchiveError("bad numpy scalar")
    code = dtype.args[0] if dtype.args else None
    if not isinstance(code, str) or not re.fullmatch(r"[biuf][1248]", code):
        raise ArchiveError(f"numpy scalar of unsupported dtype {code!r}")
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "<"
    np_dtype = np.dtype(code).newbyteorder(order if order in ("<", ">") else "=")
    if len(data) != np_dtype.itemsize:
        raise ArchiveError("numpy scalar of the wrong size")
    return np.frombuffer(data, dtype=np_dtype)[0].item()


def _encode_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode``: protocol-2 pickles store ``bytes`` as latin-1 text (numpy scalars do)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ArchiveError(f"bad bytes encoding {encoding!r}")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any = None) -> StandIn:
    """``copyreg._reconstructor`` (protocol 0/1 objects); only stand-in classes may be created."""
    if not (isinstance(cls, type) and issubclass(cls, StandIn)) or base is not object:
        raise ArchiveError(f"copyreg._reconstructor for a class that is not allowed: {cls!r}")
    return cls()


# --------------------------------------------------------------------------------------------------------------
# The allow-list
# --------------------------------------------------------------------------------------------------------------

_YOLOV5_CLASSES = {
    "models.yolo": "Model DetectionModel BaseModel Detect SegmentationModel Segment ClassificationModel",
    "models.common": (
        "Conv DWConv DWConvTranspose2d TransformerLayer TransformerBlock Bottleneck BottleneckCSP CrossConv C3 C3x "
        "C3TR C3SPP C3Ghost SPP SPPF Focus GhostConv GhostBottleneck Contract Expand Concat Classify Proto"
    ),
    "models.experimental": "CrossConv Sum MixConv2d",
    "utils.activations": "SiLU Hardswish Mish MemoryEfficientMish FReLU",
    "torch.nn.modules.container": "Sequential ModuleList ModuleDict",
    "torch.nn.modules.conv": "Conv2d ConvTranspose2d",
    "torch.nn.modules.batchnorm": "BatchNorm2d",
    "torch.nn.modules.activation": "SiLU ReLU ReLU6 LeakyReLU Hardswish Sigmoid Mish Tanh MultiheadAttention",
    "torch.nn.modules.linear": "Identity Linear NonDynamicallyQuantizableLinear",
    "torch.nn.modules.pooling": "MaxPool2d AdaptiveAvgPool2d AvgPool2d",
    "torch.nn.modules.upsampling": "Upsample",
    "torch.nn.modules.dropout": "Dropout",
    "torch.nn.modules.flatten": "Flatten",
    "argparse": "Namespace",
    "numpy": "dtype",
}

_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "torch.Size": _rebuild_size,
    "torch.device": _rebuild_device,
    "pathlib.Path": _rebuild_posix_path,
    "pathlib.PosixPath": _rebuild_posix_path,
    "pathlib.PurePosixPath": _rebuild_posix_path,
    "pathlib.WindowsPath": _rebuild_windows_path,
    "pathlib.PureWindowsPath": _rebuild_windows_path,
    "numpy.core.multiarray.scalar": _rebuild_numpy_scalar,
    "numpy._core.multiarray.scalar": _rebuild_numpy_scalar,
    "copyreg._reconstructor": _reconstructor,
    "_codecs.encode": _encode_bytes,
}

# Containers with no behaviour beyond holding the values the pickle gives them.
_BUILTINS: dict[str, Any] = {
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "collections.OrderedDict": collections.OrderedDict,
}

# Python 2 module names that protocol-2 pickles use.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _qualified(module: str, name: str) -> str:
    """``module.name`` in Python 3 spelling (``__builtin__.set`` -> ``builtins.set``)."""
    return f"{_PY2_MODULES.get(module, module)}.{name}"


def _build_allow_list() -> dict[str, Any]:
    allowed: dict[str, Any] = dict(_BUILTINS)
    allowed.update({name: _Rebuilder(func) for name, func in _FUNCTIONS.items()})
    for module, names in _YOLOV5_CLASSES.items():
        for name in names.split():
            allowed[f"{module}.{name}"] = _standin_class(f"{module}.{name}")
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[f"torch.{name}"] = StorageType(name, dtype)
    return allowed


# --------------------------------------------------------------------------------------------------------------
# Reading the archive
# --------------------------------------------------------------------------------------------------------------


def find_data_pickle(archive: zipfile.ZipFile) -> str:
    """Name of the single ``<prefix>/data.pkl`` record of a PyTorch zip checkpoint.

    Raises:
        ArchiveError: there is no such record, or more than one.
    """
    names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(names) != 1:
        raise ArchiveError("zip archive without a single '<name>/data.pkl' record: not a PyTorch checkpoint")
    return names[0]


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"})
_MEMO_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


def pickled_globals(archive: zipfile.ZipFile) -> set[str]:
    """Every global the checkpoint's pickle names, as ``module.name``, read from its opcodes: nothing is unpickled.

    A ``STACK_GLOBAL`` (protocol 4 and later) is resolved from the strings pushed or memoised before it; one whose
    operands cannot be told without running the pickle is reported as ``"?"``.

    Raises:
        ArchiveError: there is no single pickle record, or the pickle is malformed.
    """
    data = archive.read(find_data_pickle(archive))
    found: set[str] = set()
    memo: dict[int, str | None] = {}
    pushed: list[str | None] = [None, None]  # what the last two pushing opcodes pushed, strings only
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.add(_qualified(*arg.split(" ", 1)))
            elif op.name == "STACK_GLOBAL":
                module, name = pushed
                found.add(_qualified(module, name) if module and name else "?")
            if op.name in _MEMO_PUT_OPS:
                memo[len(memo) if arg is None else arg] = pushed[-1]
            else:
                value = arg if op.name in _STRING_OPS else memo.get(arg) if op.name in _MEMO_GET_OPS else None
                pushed = [pushed[-1], value]
    except ValueError as exc:  # pickletools' report of a bad opcode or a truncated argument
        raise ArchiveError(f"malformed pickle ({exc})") from exc
    return found


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only through the allow-list and storages only from the archive."""

    def __init__(self, file: io.BufferedIOBase, archive: zipfile.ZipFile, prefix: str, allowed: dict) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._allowed = allowed
        self._storages: dict[str, TensorRef] = {}
        self._swap = _needs_byteswap(archive, prefix)

    def find_class(self, module: str, name: str) -> Any:
        full = _qualified(module, name)
        if full not in self._allowed:
            raise RefusedGlobalError(full)
        return self._allowed[full]

    def persistent_load(self, pid: Any) -> TensorRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ArchiveError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType) or not isinstance(key, str) or not key.isalnum():
            raise ArchiveError(f"bad storage reference {pid!r}")
        if type(numel) is not int or numel < 0:
            raise ArchiveError(f"bad storage size {numel!r}")
        if key not in self._storages:
            self._storages[key] = TensorRef(self._read_storage(key, storage_type.dtype, numel))
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """A flat tensor of ``numel`` elements from record ``<prefix>/data/<key>``."""
        record = f"{self._prefix}/data/{key}"
        try:
            raw = self._archive.read(record)
        except KeyError:
            raise ArchiveError(f"missing tensor data record '{record}'") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a bad CRC or a short read
            raise ArchiveError(f"corrupt tensor data record '{record}': {exc}") from exc
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise ArchiveError(f"tensor data record '{record}' has {len(raw)} bytes, expected {numel * itemsize}")
        if numel == 0:
            return torch.empty(0, dtype=dtype)
        if self._swap and itemsize > 1:
            raw = np.frombuffer(raw, dtype=np.uint8).reshape(-1, itemsize)[:, ::-1].tobytes()
        return torch.frombuffer(bytearray(raw), dtype=dtype)


def _needs_byteswap(archive: zipfile.ZipFile, prefix: str) -> bool:
    """Whether the archive's tensors were written on a machine of the other byte order."""
    try:
        order = archive.read(f"{prefix}/byteorder").decode("ascii", "replace")
    except KeyError:
        return False  # files without the record were written little-endian
    if order not in ("little", "big"):
        raise ArchiveError(f"unknown byte order {order!r}")
    return order != sys.byteorder


def restricted_load(archive: zipfile.ZipFile) -> Any:
    """Unpickle the checkpoint in ``archive`` without importing or running any pickled class.

    Args:
        archive: an open PyTorch zip checkpoint.

    Returns:
        The pickled object, with module objects replaced by :class:`StandIn` instances and tensors by
        :class:`TensorRef` (CPU, the dtype they were saved in).

    Raises:
        RefusedGlobalError: the pickle names a global outside the allow-list.
        ArchiveError: the archive or its pickle is malformed.
    """
    pkl = find_data_pickle(archive)
    prefix = pkl.rsplit("/", 1)[0]
    with archive.open(pkl) as file:
        unpickler = _RestrictedUnpickler(file, archive, prefix, _build_allow_list())
        try:
            return unpickler.load()
        except ArchiveError:
            raise
        except Exception as exc:  # any failure inside the pickle machinery means a malformed file
            raise ArchiveError(f"malformed pickle ({type(exc).__name__}: {exc})") from exc
