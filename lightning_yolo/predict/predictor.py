"""Inference: load any kind of weights, letterbox a batch of pictures, run the model (optionally with test-time
augmentation), suppress overlapping boxes and map them back to the original pictures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lightning_yolo.data.transforms import letterbox
from lightning_yolo.models.weights import build_model_from_weights
from lightning_yolo.models.yolo import DetectionModel
from lightning_yolo.ops.boxes import scale_boxes
from lightning_yolo.ops.nms import non_max_suppression
from lightning_yolo.settings import round_to_stride

__all__ = ["Detector", "PredictSettings", "Predictor", "augmented_forward", "load_detector", "parse_device"]

TTA_SCALES = (1.0, 0.83, 0.67)
"""Image scales of test-time augmentation (YOLOv5's)."""
TTA_FLIPS = (None, 3, None)
"""Flip of each TTA pass: None, or the tensor dimension to flip (3 = left-right)."""
TTA_PAD_VALUE = 0.447  # grey (about the ImageNet mean) used to pad scaled TTA inputs, as YOLOv5 does


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

    Raises:
        WeightsError: the file is missing, damaged or not a detection model; the message names it.
    """
    model = build_model_from_weights(weights).float().fuse().eval().to(device)
    if half:
        model.half()
    model.requires_grad_(False)
    return Detector(model, list(model.names), int(model.stride.max()))


def _scale_image(x: torch.Tensor, ratio: float, stride: int) -> torch.Tensor:
    """Resize a (bs, 3, H, W) batch by ``ratio`` and pad it up to multiples of ``stride`` (bottom/right)."""
    if ratio == 1.0:
        return x
    h, w = x.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    ph, pw = (math.ceil(v * ratio / stride) * stride for v in (h, w))
    return F.pad(x, [0, pw - size[1], 0, ph - size[0]], value=TTA_PAD_VALUE)


def _descale(pred: torch.Tensor, flip: int | None, ratio: float, hw: tuple[int, int]) -> torch.Tensor:
    """Boxes of a TTA pass back in the frame of the unscaled, unflipped input; ``pred`` is (bs, N, 5 + nc)."""
    x, y, wh = pred[..., 0:1] / ratio, pred[..., 1:2] / ratio, pred[..., 2:4] / ratio
    if flip == 2:
        y = hw[0] - y
    elif flip == 3:
        x = hw[1] - x
    return torch.cat((x, y, wh, pred[..., 4:]), -1)


def _clip_tails(preds: list[torch.Tensor], nl: int) -> list[torch.Tensor]:
    """Drop the coarsest level from the full-size pass and the finest level from the smallest pass.

    Rows are ordered level by level and level i holds 1 / 4**i of the finest level's rows, so the whole output
    counts ``sum(4**i)`` units of the coarsest level's size.
    """
    units = sum(4**i for i in range(nl))
    coarsest = preds[0].shape[1] // units
    preds[0] = preds[0][:, :-coarsest]  # large objects are left to the scaled passes
    finest = (preds[-1].shape[1] // units) * 4 ** (nl - 1)
    preds[-1] = preds[-1][:, finest:]  # small objects are left to the full-size pass
    return preds


def augmented_forward(model: DetectionModel, x: torch.Tensor) -> torch.Tensor:
    """YOLOv5 test-time augmentation: passes at scales 1, 0.83 (flipped left-right) and 0.67, merged.

    Args:
        model: the model in eval mode.
        x: (bs, 3, H, W) input with H, W multiples of the largest stride.

    Returns:
        (bs, N', 5 + nc) decoded predictions in the pixels of ``x``, ready for NMS.
    """
    hw = (x.shape[2], x.shape[3])
    stride = int(model.stride.max())
    preds = []
    for ratio, flip in zip(TTA_SCALES, TTA_FLIPS, strict=True):
        xi = _scale_image(x.flip(flip) if flip else x, ratio, stride)
        preds.append(_descale(model(xi), flip, ratio, hw))
    return torch.cat(_clip_tails(preds, model.model[-1].nl), 1)


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
        parameter = next(detector.model.parameters())
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
