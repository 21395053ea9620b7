"""Run an exported model where a PyTorch detection model would run: ``predict --weights model.onnx`` and
``validate --model.weights yolov5n_openvino_model/`` load the file through :func:`load_backend`.

A :class:`Backend` is called like the detection model in eval mode: float (bs, 3, H, W) RGB in [0, 1] in, decoded
predictions (bs, N, 5 + nc) out (centre x, centre y, width, height in input pixels, objectness, class
probabilities), so the existing NMS and box mapping work unchanged. A file exported with a fixed input size or
batch takes other inputs too: the batch is split into the file's batch size, and each input is padded at the right
and bottom to the file's size, or first shrunk to fit when larger; boxes come back in the input's pixels.

Which runtime loads a file is told from its name (:func:`is_exported`); the runtimes are in
:mod:`lightning_yolo.export.runtimes`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lightning_yolo.export.metadata import ExportMetadata
from lightning_yolo.models.weights import WeightsError

__all__ = ["Backend", "exported_format", "is_exported", "load_backend"]

PAD_VALUE = 114 / 255
"""Letterbox grey, as the fill of the padding added to reach a fixed input size."""

SUFFIXES = {
    ".onnx": "onnx",
    ".torchscript": "torchscript",
    ".xml": "openvino",
    ".mlpackage": "coreml",
    ".mlmodel": "coreml",
    ".engine": "engine",
    ".tflite": "tflite",
}


def exported_format(path: str | Path) -> str | None:
    """The export format a path names (``onnx``, ``openvino``, ...), or None for PyTorch weights."""
    path = Path(path)
    if path.name.endswith("_openvino_model"):
        return "openvino"
    if path.name.endswith("_saved_model"):
        return "saved_model"
    return SUFFIXES.get(path.suffix.lower())


def is_exported(path: str | Path | None) -> bool:
    """Whether ``path`` names an exported model rather than PyTorch weights (``.pt``, ``.ckpt``)."""
    return path is not None and exported_format(path) is not None


class Backend:
    """An exported model with the PyTorch detection model's eval interface (see the module docstring).

    Attributes:
        path: the file or folder.
        meta: what the file carries (names, stride, size, ...).
        device: the device inputs come from and outputs go to.
        shape: the fixed ``(H, W)`` input size, or None when the file takes any size.
        batch: the fixed batch size, or None when the file takes any batch.
        dtype: the dtype callers hand in (always float32: a float16 file casts inside).
    """

    dtype = torch.float32

    def __init__(
        self, path: Path, meta: ExportMetadata, device: torch.device, shape: tuple[int, int] | None, batch: int | None
    ) -> None:
        self.path, self.meta, self.device, self.shape, self.batch = path, meta, device, shape, batch

    @property
    def names(self) -> list[str]:
        """Class names, index = class id."""
        return list(self.meta.names)

    @property
    def stride(self) -> int:
        """The largest level stride in pixels."""
        return self.meta.stride

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The runtime's forward pass on an input of exactly the file's size and batch (float32, any device);
        returns (bs, N, 5 + nc) float32."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded predictions (bs, N, 5 + nc) float32 on ``x``'s device, boxes in ``x``'s pixels."""
        x = x.float().contiguous()
        ratio = 1.0
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            x, ratio = fit_to_shape(x, self.shape)
        step = self.batch or x.shape[0]
        outputs = [self._run_padded(chunk, step) for chunk in x.split(step)]
        out = torch.cat(outputs).to(x.device)
        if ratio != 1.0:
            out[..., :4] /= ratio
        return out

    def _run_padded(self, chunk: torch.Tensor, batch: int) -> torch.Tensor:
        """Run a chunk, filled up with zero images to the fixed batch when it is short."""
        n = chunk.shape[0]
        if self.batch is not None and n < batch:
            chunk = torch.cat((chunk, chunk.new_zeros(batch - n, *chunk.shape[1:])))
        return self.run(chunk)[:n].float()


def fit_to_shape(x: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """Fit (bs, 3, h, w) into (bs, 3, H, W): shrink by ``r = min(H / h, W / w)`` when larger (bilinear), then pad
    right and bottom with letterbox grey. Returns the fitted input and ``r`` (1.0 when nothing was shrunk)."""
    height, width = shape
    h, w = x.shape[2:]
    ratio = min(height / h, width / w, 1.0)
    if ratio < 1.0:
        size = (min(height, round(h * ratio)), min(width, round(w * ratio)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = x.shape[2:]
    return F.pad(x, (0, width - w, 0, height - h), value=PAD_VALUE), ratio


def load_backend(path: str | Path, device: str | torch.device = "cpu") -> Backend:
    """Load an exported model for inference on ``device``.

    Raises:
        WeightsError: the file is missing, is not a model of its format, lacks the metadata, needs a runtime that is
            not installed (the message holds the ``pip install`` line) or a platform this is not (CoreML needs
            macOS, TensorRT a CUDA device), or was exported with ``--nms``. The message names the file.
    """
    from lightning_yolo.export import runtimes
    from lightning_yolo.export.extras import MissingExtraError

    path, device = Path(path), torch.device(device)
    kind = exported_format(path)
    if kind is None:
        raise WeightsError(f"cannot load {path}: not an exported model (expected {', '.join(sorted(SUFFIXES))})")
    if not path.exists():
        raise WeightsError(f"cannot load {path}: no such file")
    try:
        backend = runtimes.LOADERS[kind](path, device)
    except MissingExtraError as exc:
        raise WeightsError(f"cannot load {path}: {exc}") from None
    except (ValueError, RuntimeError, OSError) as exc:  # the runtimes' own errors for damaged files
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load {path}: {message}") from None
    if backend.meta.nms:
        raise WeightsError(
            f"cannot load {path}: it was exported with --nms and returns final detections; "
            "predict and validate need a file exported without --nms"
        )
    return backend
