"""What a prediction run writes: annotated pictures and videos, YOLO txt labels, crops and a COCO-style JSON.

Every function takes detections as ``(n, 6)`` rows ``[x1, y1, x2, y2, conf, cls]`` in the pixels of the picture
they belong to (what :class:`~lightning_yolo.predict.predictor.Predictor` returns).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lightning_yolo.ops.boxes import clip_boxes, xyxy_to_xywh, xyxy_to_xywhn
from lightning_yolo.plots import class_color
from lightning_yolo.plots.images import draw_box

__all__ = [
    "CSV_HEADER",
    "CocoCollector",
    "CsvWriter",
    "VideoSink",
    "annotate",
    "box_label",
    "save_crops",
    "write_image",
    "write_txt",
]

CROP_GAIN = 1.02  # crops are 2 % larger than the box ...
CROP_PAD = 10  # ... plus 10 px, as YOLOv5 saves them
DEFAULT_FPS = 30.0  # for videos that report no frame rate


def _line_width(shape: tuple[int, ...]) -> int:
    """Box line width for a picture of ``shape`` (H, W, ...): 0.3 % of its mean side, at least 2 px."""
    return max(round((shape[0] + shape[1]) / 2 * 0.003), 2)


def box_label(name: str, conf: float, hide_labels: bool = False, hide_conf: bool = False) -> str:
    """The text drawn on a box: ``name conf`` (``person 0.87``), ``name`` with ``hide_conf``, none with
    ``hide_labels`` (YOLOv5's ``--hide-labels`` / ``--hide-conf``)."""
    if hide_labels:
        return ""
    return name if hide_conf else f"{name} {conf:.2f}"


def annotate(
    image: np.ndarray,
    det: torch.Tensor,
    names: list[str],
    line_width: int = 0,
    hide_labels: bool = False,
    hide_conf: bool = False,
) -> np.ndarray:
    """A copy of a BGR picture with each detection drawn as a box labelled ``name conf`` in its class colour.

    Args:
        image: ``(H, W, 3)`` uint8 BGR picture.
        det: ``(n, 6)`` detections in its pixels.
        names: class names.
        line_width: box line width in pixels (the label font scales with it); 0 picks one from the picture size.
        hide_labels: draw boxes only, no label tags.
        hide_conf: label tags without the confidence.
    """
    out = image.copy()
    lw = line_width or _line_width(out.shape)
    for *box, conf, cls in reversed(det.tolist()):  # lowest confidence first, so the best is drawn on top
        c = int(cls)
        name = names[c] if 0 <= c < len(names) else str(c)
        draw_box(out, box, box_label(name, conf, hide_labels, hide_conf), class_color(c, bgr=True), lw)
    return out


def _yolo_txt_lines(det: torch.Tensor, shape: tuple[int, ...], save_conf: bool = False) -> list[str]:
    """YOLO label lines ``cls x y w h [conf]`` (normalised centre boxes) for a picture of ``shape`` (H, W, ...)."""
    if not len(det):
        return []
    xywhn = xyxy_to_xywhn(det[:, :4].clone(), w=shape[1], h=shape[0])
    lines = []
    for (x, y, w, h), conf, cls in zip(xywhn.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True):
        values = [int(cls), x, y, w, h] + ([conf] if save_conf else [])
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


def write_txt(path: Path, det: torch.Tensor, shape: tuple[int, ...], save_conf: bool = False) -> None:
    """Write the YOLO label file of one picture (an empty file when nothing was detected)."""
    lines = _yolo_txt_lines(det, shape, save_conf)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _crop_box(image: np.ndarray, box: list[float], gain: float = CROP_GAIN, pad: int = CROP_PAD) -> np.ndarray:
    """The part of ``image`` under an xyxy box, enlarged by ``gain`` and ``pad`` pixels and clipped to the image."""
    xywh = xyxy_to_xywh(torch.tensor([box], dtype=torch.float32))
    xywh[:, 2:] = xywh[:, 2:] * gain + pad
    xyxy = clip_boxes(torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1), image.shape)
    x1, y1, x2, y2 = (int(v) for v in xyxy[0].tolist())
    return image[y1:y2, x1:x2].copy()


def save_crops(folder: Path, stem: str, image: np.ndarray, det: torch.Tensor, names: list[str]) -> int:
    """Save each detection's crop as ``folder/<class name>/<stem>[_k].jpg``; returns how many were written."""
    written = 0
    for k, (*box, _, cls) in enumerate(det.tolist()):
        c = int(cls)
        crop = _crop_box(image, box)
        if crop.size == 0:
            continue
        target = folder / (names[c] if 0 <= c < len(names) else str(c))
        target.mkdir(parents=True, exist_ok=True)
        write_image(target / (f"{stem}.jpg" if k == 0 else f"{stem}_{k}.jpg"), crop)
        written += 1
    return written


def write_image(path: Path, image: np.ndarray) -> None:
    """Write a picture, failing loudly (``cv2.imwrite`` only returns False)."""
    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise OSError(f"{path}: cannot encode the picture")
    path.write_bytes(data.tobytes())


class CocoCollector:
    """Detections of a run as COCO-style records ``{image_id, category_id, category_name, bbox, score}``.

    ``bbox`` is ``[x_min, y_min, width, height]`` in picture pixels; ``image_id`` is the file stem (an int when the
    stem is a number, as COCO file names are), with ``_<frame>`` for video frames; ``category_id`` is the class id.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.records: list[dict[str, Any]] = []

    def add(self, image_id: str, det: torch.Tensor) -> None:
        """Add the detections of one picture."""
        key: str | int = int(image_id) if image_id.isnumeric() else image_id
        boxes = det[:, :4].clone()
        boxes[:, 2:] -= boxes[:, :2]  # xyxy -> top-left xywh
        for box, conf, cls in zip(boxes.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True):
            c = int(cls)
            name = self.names[c] if 0 <= c < len(self.names) else str(c)
            bbox = [round(v, 3) for v in box]
            self.records.append(
                {"image_id": key, "category_id": c, "category_name": name, "bbox": bbox, "score": round(conf, 5)}
            )

    def save(self, path: Path) -> Path:
        """Write the records as a JSON list (atomically)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.records), encoding="utf-8")
        os.replace(tmp, path)
        return path


CSV_HEADER = ("Image Name", "Prediction", "Confidence")
"""Columns of ``predictions.csv`` (YOLOv5's ``--save-csv``)."""


class CsvWriter:
    """``predictions.csv`` as YOLOv5's ``--save-csv`` writes it: one row per detection, ``Image Name`` (the file
    name; ``<file name>:<frame>`` for a video frame), ``Prediction`` (the class name) and ``Confidence`` (two
    decimals), lowest confidence first within a picture as YOLOv5 lists them. The header is written at once, so a
    run without detections leaves a file with the header only.
    """

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.names = names
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)
        self.rows = 0

    def add(self, image_name: str, det: torch.Tensor) -> None:
        """Add a row for each detection of one picture."""
        for conf, cls in reversed(det[:, 4:6].tolist()):
            c = int(cls)
            self._writer.writerow((image_name, self.names[c] if 0 <= c < len(self.names) else str(c), f"{conf:.2f}"))
            self.rows += 1

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


class VideoSink:
    """Annotated frames written to one video per source video (``<stem>.mp4``, codec mp4v; MJPG ``.avi`` when
    this OpenCV build cannot write mp4v)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writers: dict[Path, tuple[cv2.VideoWriter, Path]] = {}

    def write(self, source: Path, frame: np.ndarray, fps: float) -> Path:
        """Append a frame to the video made for ``source``; returns the output path."""
        if source not in self._writers:
            self._writers[source] = self._open(source.stem, frame.shape, fps or DEFAULT_FPS)
        writer, path = self._writers[source]
        writer.write(frame)
        return path

    def _open(self, stem: str, shape: tuple[int, ...], fps: float) -> tuple[cv2.VideoWriter, Path]:
        size = (shape[1], shape[0])
        for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
            path = self.folder / f"{stem}{suffix}"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
            if writer.isOpened():
                return writer, path
            writer.release()
            path.unlink(missing_ok=True)
        raise OSError(f"{self.folder / stem}: OpenCV cannot write a video here (tried mp4v and MJPG)")

    def close(self) -> list[Path]:
        """Finish every video; returns their paths."""
        paths = []
        for writer, path in self._writers.values():
            writer.release()
            paths.append(path)
        self._writers.clear()
        return paths
