"""Inference: load any kind of weights, letterbox a batch of pictures, run the model (optionally with test-time
augmentation), suppress overlapping boxes and map them back to the original pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_yolo.data.transforms import letterbox
from lightning_yolo.models.tta import augmented_forward
from lightning_yolo.models.weights import build_model_from_weights
from lightning_yolo.models.yolo import DetectionModel
from lightning_yolo.ops.boxes import scale_boxes
from lightning_yolo.ops.nms import non_max_suppression
from lightning_yolo.settings import round_to_stride

__all__ = ["Detector", "PredictSettings", "Predictor", "load_detector", "parse_device"]


@dataclass
class Detector:
    """A fused detection model in eval mode with what inference needs to know about it.

    Attributes:
        model: the model, eval mode, BatchNorms folded into the convolutions.
        names: class names, index = class id.
        stride: the largest level stride in pixels (input sizes must be multiples of it).
    """

    model: DetectionModel
    names: list[str]
    stride: int


def parse_device(text: str) -> torch.device:
    """A torch device from ``cpu``, ``cuda``, ``cuda:1`` or a bare index ``1``; CUDA must be available."""
    device = torch.device(f"cuda:{text}" if text.isdigit() else text)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text}: CUDA is not available")
    return device


def load_detector(weights: str | Path, device: str | torch.device = "cpu", half: bool = False) -> Detector:
    """Load an official YOLOv5 ``.pt``, a converted weights file or a training ``.ckpt`` for inference.

    Args:
        weights: the file.
        device: where the model runs.
        half: float16 weights (after fusing in float32); meant for CUDA, where it is about twice as fast.

    An exported model (``.onnx``, ``.torchscript``, ``*_openvino_model/``, ...) loads as a
    :class:`~lightning_yolo.export.backends.Backend` in ``Detector.model``, called like the PyTorch model (its own
    precision; ``half`` is ignored).

    Raises:
        WeightsError: the file is missing, damaged or not a detection model; the message names it.
    """
    from lightning_yolo.export.backends import is_exported, load_backend  # runtimes load only for exported files

    if is_exported(weights):
        backend = load_backend(weights, device)
        return Detector(backend, backend.names, backend.stride)  # type: ignore[arg-type]
    model = build_model_from_weights(weights).float().fuse().eval().to(device)
    if half:
        model.half()
    model.requires_grad_(False)
    return Detector(model, list(model.names), int(model.stride.max()))


@dataclass
class PredictSettings:
    """Inference settings (``detect.py`` defaults).

    Attributes:
        imgsz: the letterboxed input's bounds in pixels, ``(height, width)`` or one int for a square (each rounded
            up to a multiple of the stride); a picture is scaled to fit inside them, keeping its aspect ratio, then
            padded only up to the next multiple of the stride (YOLOv5's ``--imgsz 640`` or ``--imgsz 480 640``).
        conf: confidence threshold (objectness x class probability).
        iou: NMS IoU threshold.
        max_det: most detections kept per picture.
        classes: keep only these class ids (None: all).
        agnostic: suppress overlapping boxes across classes.
        augment: test-time augmentation.
    """

    imgsz: int | tuple[int, int] = 640
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 1000
    classes: list[int] | None = None
    agnostic: bool = False
    augment: bool = False


def _round_imgsz(imgsz: int | Sequence[int], stride: int) -> int | tuple[int, int]:
    """``imgsz`` (one size, or height and width) rounded up to multiples of ``stride``, with a warning if changed."""
    if isinstance(imgsz, int):
        return round_to_stride(imgsz, stride)
    if len(imgsz) != 2:
        raise ValueError(f"imgsz {list(imgsz)} must be one size or (height, width)")
    return round_to_stride(int(imgsz[0]), stride), round_to_stride(int(imgsz[1]), stride)


class Predictor:
    """Run a :class:`Detector` on BGR pictures and return boxes in each picture's own pixels.

    The input is cast to the detector's dtype, so a detector loaded with ``half=True`` runs in float16.
    """

    def __init__(self, detector: Detector, settings: PredictSettings) -> None:
        self.detector = detector
        self.settings = settings
        self.imgsz = _round_imgsz(settings.imgsz, detector.stride)
        if settings.augment and not isinstance(detector.model, torch.nn.Module):
            raise ValueError("--augment (test-time augmentation) needs PyTorch weights, not an exported model")
        model = detector.model
        parameter = next(model.parameters()) if isinstance(model, torch.nn.Module) else model  # Backend: its own
        self.device, self.dtype = parameter.device, parameter.dtype  # float16 for a detector loaded with half=True

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple]:
        """CHW RGB uint8 input and its ``((r, r), (dw, dh))`` for mapping boxes back."""
        img, ratio, pad = letterbox(image, self.imgsz, auto=True, stride=self.detector.stride)
        return np.ascontiguousarray(img.transpose(2, 0, 1)[::-1]), (ratio, pad)  # HWC BGR -> CHW RGB

    @torch.no_grad()
    def _infer(self, inputs: list[np.ndarray]) -> list[torch.Tensor]:
        """NMS output (n, 6) for a batch of same-shape letterboxed inputs, in letterboxed pixels."""
        x = torch.from_numpy(np.stack(inputs)).to(self.device).to(self.dtype) / 255  # (bs, 3, H, W)
        model = self.detector.model
        pred = augmented_forward(model, x) if self.settings.augment else model(x)
        s = self.settings
        return non_max_suppression(pred, s.conf, s.iou, s.classes, s.agnostic, max_det=s.max_det)

    def __call__(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Detections for each picture.

        Pictures whose letterboxed shapes agree run as one batch; others run in separate batches.

        Args:
            images: ``(H, W, 3)`` uint8 BGR pictures.

        Returns:
            One CPU float tensor (n, 6) per picture, rows ``[x1, y1, x2, y2, conf, cls]`` in the picture's pixels
            (rounded to whole pixels, as ``detect.py`` reports them), highest confidence first.
        """
        prepared = [self._letterbox(image) for image in images]
        results: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (inp, _) in enumerate(prepared):
            groups.setdefault(inp.shape, []).append(i)
        for shape, indices in groups.items():
            dets = self._infer([prepared[i][0] for i in indices])
            for i, det in zip(indices, dets, strict=True):
                det = det.float().cpu()
                det[:, :4] = scale_boxes(shape[1:], det[:, :4], images[i].shape[:2], prepared[i][1]).round()
                results[i] = det
        return results  # type: ignore[return-value]
