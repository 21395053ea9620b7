"""COCO-format detections (YOLOv5's ``--save-json``) and their evaluation with the COCO API.

Detections follow YOLOv5's ``save_one_json``: ``image_id`` is the image file's stem, as an int when it is numeric;
``bbox`` is ``[x, y, w, h]`` (top-left corner, width, height) in original-image pixels rounded to 3 decimals;
``score`` is rounded to 5 decimals; ``category_id`` is the class's id in the ground truth.

Ground truth is the dataset's COCO annotation file when it has one (``<root>/annotations/instances_<split>.json``,
as YOLOv5 looks for COCO's ``instances_val2017.json``, or a path given), else the YOLO labels converted by
:func:`labels_to_coco`. The evaluator is faster-coco-eval or pycocotools, whichever is installed (the optional extra
``[coco]``); nothing here needs either until :func:`evaluate_coco` runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("lightning_yolo")

__all__ = [
    "COCO91_IDS",
    "INSTALL_HINT",
    "CocoResult",
    "GroundTruth",
    "coco_backend",
    "coco_image_id",
    "detections_to_coco",
    "evaluate_coco",
    "labels_to_coco",
    "resolve_ground_truth",
]

COCO91_IDS: tuple[int, ...] = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
"""COCO's category id of each of the 80 YOLO class indices (YOLOv5's ``coco80_to_coco91_class``)."""

BACKENDS = ("faster_coco_eval", "pycocotools")
"""COCO evaluators, preferred first."""

INSTALL_HINT = "COCO evaluation needs: pip install -e '.[coco]' (or pip install faster-coco-eval)"
"""The one line printed when no COCO evaluator is installed."""

Record = dict[str, Any]


def coco_image_id(path: str | Path) -> int | str:
    """YOLOv5's COCO image id of an image file: its stem, as an int when the stem is numeric (COCO's file names)."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def detections_to_coco(detections: torch.Tensor, image_id: int | str, category_ids: Sequence[int]) -> list[Record]:
    """COCO result records of one image's detections.

    Args:
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, score, cls]`` in original-image pixels.
        image_id: The image's id in the ground truth.
        category_ids: Category id of each class index.

    Returns:
        ``n`` records ``{image_id, category_id, bbox: [x, y, w, h], score}`` (bbox to 3 decimals, score to 5).
    """
    det = detections.detach().float().cpu()
    box = det[:, :4].clone()
    box[:, 2:] -= box[:, :2]  # (n, 4) [x1, y1, w, h]
    rows = zip(box.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True)
    return [
        {
            "image_id": image_id,
            "category_id": category_ids[int(c)],
            "bbox": [round(v, 3) for v in b],
            "score": round(s, 5),
        }
        for b, s, c in rows
    ]


def labels_to_coco(
    image_files: Sequence[str],
    image_ids: Sequence[int | str],
    shapes_wh: np.ndarray,
    labels: Sequence[np.ndarray],
    names: Sequence[str],
) -> dict[str, Any]:
    """COCO ground truth from YOLO labels; the category id of a class is its index.

    Args:
        image_files: Image paths (their file names are recorded).
        image_ids: Id of each image.
        shapes_wh: ``(N, 2)`` original ``[width, height]`` of each image.
        labels: Per image ``(k, 5)`` ``[cls, x, y, w, h]`` normalised to the image.
        names: Class names, index = class id.

    Returns:
        ``{images, annotations, categories}``: boxes ``[x, y, w, h]`` in pixels, ``area = w * h``, ``iscrowd`` 0.
    """
    images, annotations = [], []
    for file, image_id, (width, height), lb in zip(image_files, image_ids, shapes_wh, labels, strict=True):
        images.append({"id": image_id, "file_name": Path(file).name, "width": int(width), "height": int(height)})
        xywh = np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 1:] * [width, height, width, height]
        xywh[:, :2] -= xywh[:, 2:] / 2  # centre -> top-left corner
        for cls, box in zip(np.asarray(lb).reshape(-1, 5)[:, 0], xywh.tolist(), strict=True):
            box = [round(v, 3) for v in box]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": box,
                    "area": round(box[2] * box[3], 3),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": str(name)} for i, name in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


# ------------------------------------------------------------------------------------------------ ground truth
@dataclass
class GroundTruth:
    """COCO ground truth for one dataset split, and how the split's images and classes map onto it.

    Attributes:
        data: The COCO-format ground truth (``images``, ``annotations``, ``categories``).
        source: The annotation file, or None when converted from the YOLO labels.
        image_ids: Id of each dataset image in ``data``, in dataset order.
        category_ids: Category id of each class index.
    """

    data: dict[str, Any]
    source: Path | None
    image_ids: list[int | str]
    category_ids: list[int]

    @property
    def is_converted(self) -> bool:
        """True when built from the YOLO labels rather than read from an annotation file."""
        return self.source is None


def find_annotations(root: Path, sources: Sequence[Path]) -> Path | None:
    """``<root>/annotations/instances_<name>.json`` of the first split source that has one (COCO's layout:
    ``val2017.txt`` or ``images/val2017`` -> ``instances_val2017.json``); None when there is none."""
    for source in sources:
        candidate = Path(root) / "annotations" / f"instances_{Path(source).stem}.json"
        if candidate.is_file():
            return candidate
    return None


def category_ids_for(names: Sequence[str], categories: Sequence[Mapping[str, Any]]) -> list[int] | None:
    """Category id of each class: by name; else COCO's 80 -> 91 ids for 80 classes against COCO's categories;
    else the class index when the file has those ids. None when none of these fits."""
    by_name = {str(c.get("name")): int(c["id"]) for c in categories}
    if all(name in by_name for name in names):
        return [by_name[name] for name in names]
    ids = set(by_name.values())
    if len(names) == len(COCO91_IDS) and set(COCO91_IDS) <= ids:
        return list(COCO91_IDS)
    if set(range(len(names))) <= ids:
        return list(range(len(names)))
    return None


def _match_images(annotations: Mapping[str, Any], image_files: Sequence[str]) -> tuple[list[int | str], int]:
    """Id of each image in an annotation file (by file name, else by YOLOv5's id) and how many are missing."""
    images = annotations.get("images", [])
    by_name = {Path(str(img.get("file_name", ""))).name: img["id"] for img in images}
    known = {img["id"] for img in images}
    ids, missing = [], 0
    for file in image_files:
        found = by_name.get(Path(file).name)
        if found is None:
            found = coco_image_id(file) if coco_image_id(file) in known else None
        missing += found is None
        ids.append(found if found is not None else coco_image_id(file))
    return ids, missing


def read_annotations(path: Path, image_files: Sequence[str], names: Sequence[str]) -> GroundTruth | str:
    """The ground truth of an annotation file, or why it does not fit the dataset (images or classes missing)."""
    with open(path, encoding="utf-8") as f:
        annotations = json.load(f)
    if not isinstance(annotations, dict) or "images" not in annotations or "annotations" not in annotations:
        return "it is not a COCO annotation file"
    ids, missing = _match_images(annotations, image_files)
    if missing:
        return f"{missing} of the {len(image_files)} images are not in it"
    category_ids = category_ids_for(names, annotations.get("categories", []))
    if category_ids is None:
        return "its categories match neither the class names nor the class indices"
    return GroundTruth(annotations, Path(path), ids, category_ids)


def converted_ground_truth(
    image_files: Sequence[str], shapes_wh: np.ndarray, labels: Sequence[np.ndarray], names: Sequence[str]
) -> GroundTruth:
    """Ground truth from the YOLO labels, image ids as YOLOv5 names them (image numbers 1..N if stems repeat)."""
    ids: list[int | str] = [coco_image_id(f) for f in image_files]
    if len(set(ids)) < len(ids):
        log.warning("COCO: image file names repeat across folders; image ids are the image numbers 1..N instead")
        ids = list(range(1, len(ids) + 1))
    data = labels_to_coco(image_files, ids, shapes_wh, labels, names)
    return GroundTruth(data, None, ids, list(range(len(names))))


def resolve_ground_truth(
    image_files: Sequence[str],
    shapes_wh: np.ndarray,
    labels: Sequence[np.ndarray],
    names: Sequence[str],
    annotations: Path | None,
) -> GroundTruth:
    """The annotation file's ground truth when it fits the dataset, else the converted YOLO labels (with a
    warning saying why the file was not used)."""
    if annotations is not None:
        found = read_annotations(annotations, image_files, names)
        if isinstance(found, GroundTruth):
            return found
        log.warning("COCO: not evaluating against %s: %s; using the dataset's labels instead", annotations, found)
    return converted_ground_truth(image_files, shapes_wh, labels, names)


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class CocoResult:
    """What the COCO evaluator found.

    Attributes:
        map: mAP@0.5:0.95 (COCO's AP, 101-point interpolation, at most 100 detections per image).
        map50: mAP@0.5.
        summary: The evaluator's 12-line summary table.
        backend: The package that computed it.
    """

    map: float
    map50: float
    summary: str
    backend: str


def coco_backend() -> str | None:
    """The installed COCO evaluator (``faster_coco_eval`` preferred, then ``pycocotools``); None without one."""
    for name in BACKENDS:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def _with_integer_ids(
    ground_truth: Mapping[str, Any], predictions: Sequence[Record], image_ids: Sequence[int | str]
) -> tuple[dict[str, Any], list[Record], list[int]]:
    """Copies whose image ids are integers (faster-coco-eval needs them), and the evaluated ids, mapped alike."""
    index = {img["id"]: i + 1 for i, img in enumerate(ground_truth["images"])}
    gt = dict(ground_truth)
    gt["images"] = [{**img, "id": index[img["id"]]} for img in ground_truth["images"]]
    gt["annotations"] = [{**a, "image_id": index[a["image_id"]]} for a in ground_truth["annotations"]]
    dt = [{**p, "image_id": index[p["image_id"]]} for p in predictions]
    return gt, dt, [index[i] for i in image_ids]


def _run_faster(gt: dict[str, Any], dt: list[Record], ids: list[int], say: Callable[[str], None]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *args, **kwargs: None  # noqa: E731
    coco = COCO(gt)
    evaluator = COCOeval_faster(coco, coco.loadRes(dt), "bbox")
    evaluator.print_function = quiet
    evaluator.params.imgIds = ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.print_function = say
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def _run_pycocotools(gt: dict[str, Any], dt: list[Record], ids: list[int], say: Callable[[str], None]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # loading and evaluating chatter
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(dt), "bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    for line in summary.getvalue().splitlines():
        say(line)
    return np.asarray(evaluator.stats)


def evaluate_coco(
    ground_truth: Mapping[str, Any],
    predictions: Sequence[Record],
    image_ids: Sequence[int | str],
    backend: str | None = None,
) -> CocoResult:
    """COCO bbox evaluation of ``predictions`` against ``ground_truth`` over the images ``image_ids``.

    Neither argument is modified (the COCO API adds fields to what it loads; it gets copies).

    Args:
        ground_truth: COCO ground truth (``images``, ``annotations``, ``categories``).
        predictions: Result records (:func:`detections_to_coco`); their image ids must be in ``ground_truth``.
        image_ids: The images evaluated (a subset of a large annotation file, as YOLOv5 does for COCO).
        backend: ``faster_coco_eval`` or ``pycocotools``; default :func:`coco_backend`.

    Raises:
        ImportError: Neither evaluator is installed (the message is :data:`INSTALL_HINT`).
    """
    backend = backend or coco_backend()
    if backend is None:
        raise ImportError(INSTALL_HINT)
    if not predictions:
        return CocoResult(0.0, 0.0, "no detections to evaluate: COCO mAP 0", backend)
    gt, dt, ids = _with_integer_ids(ground_truth, predictions, image_ids)
    lines: list[str] = []
    say = lambda *args, **kwargs: lines.append(" ".join(str(a) for a in args))  # noqa: E731
    run = _run_faster if backend == "faster_coco_eval" else _run_pycocotools
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # what an evaluator version prints itself instead of to `say`
        stats = run(gt, dt, ids, say)
    lines = lines or [line for line in printed.getvalue().splitlines() if line.lstrip().startswith("Average")]
    return CocoResult(float(max(stats[0], 0.0)), float(max(stats[1], 0.0)), "\n".join(lines), backend)


def write_json(path: Path, content: Any) -> Path:
    """Write ``content`` as JSON to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)
    return path
