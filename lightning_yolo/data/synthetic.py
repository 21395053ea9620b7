"""The built-in ``synthetic`` dataset: coloured shapes on textured backgrounds, generated offline on first use.

Four classes (circle, rectangle, triangle, cross) of varied size and aspect ratio, 0-6 objects per image (about
one image in ten has none), on images of varied aspect ratio whose long side is 256 px. Written in YOLO layout::

    <cache>/synthetic-v1/
        synthetic.yaml
        images/{train,val}/000000.jpg ...
        labels/{train,val}/000000.txt ...

The generator is deterministic: the same seed gives the same bytes. The folder is built in a temporary folder
beside the target and renamed into place, so an interrupted or concurrent first use never leaves a partial
dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lightning_yolo.data.cache import cache_root

NAMES = ("circle", "rectangle", "triangle", "cross")
"""Class names of the synthetic dataset, index = class id."""

DATASET_NAME = "synthetic"
"""Value of the data module's ``data`` argument selecting this dataset."""

FOLDER = "synthetic-v1"  # bump the suffix when the generator's output changes
YAML_NAME = "synthetic.yaml"
SPLIT_SIZES = {"train": 256, "val": 64}
IMAGE_SIZE = 256
_ASPECTS = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16), (3, 2))  # width : height of the images
_MAX_OBJECTS = 6
_BACKGROUND_ONLY = 0.1  # fraction of images without objects
_JPEG_QUALITY = 92


def ensure_synthetic_dataset(cache_dir: str | Path | None = None) -> Path:
    """Generate the dataset under the cache folder unless it is already there; returns its yaml path.

    Args:
        cache_dir: Cache folder (default :func:`lightning_yolo.data.cache.cache_root`, which reads
            ``$LIGHTNING_YOLO_CACHE`` at call time).
    """
    target = cache_root(cache_dir) / FOLDER
    if (target / YAML_NAME).is_file():
        return target / YAML_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=target.parent))
    try:
        generate_synthetic_dataset(tmp)
        os.rename(tmp, target)
    except OSError:
        if not (target / YAML_NAME).is_file():  # another process finishing first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / YAML_NAME


def generate_synthetic_dataset(root: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write the dataset (images, labels, yaml) into ``root``; returns the yaml path.

    Args:
        root: Output folder (created).
        sizes: Images per split (default 256 train, 64 val).
        seed: Generator seed; each split uses its own stream derived from it.
    """
    root = Path(root)
    sizes = SPLIT_SIZES if sizes is None else sizes
    for split_index, (split, count) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, split_index])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, labels = synthetic_sample(rng)
            _write_sample(root, split, f"{i:06d}", image, labels)
    yaml_path = root / YAML_NAME
    yaml_path.write_text(_yaml_text(list(sizes)), encoding="utf-8")
    return yaml_path


def _write_sample(root: Path, split: str, stem: str, image: np.ndarray, labels: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode synthetic image {stem}")
    (root / "images" / split / f"{stem}.jpg").write_bytes(encoded.tobytes())
    lines = "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels.tolist())
    (root / "labels" / split / f"{stem}.txt").write_text(lines, encoding="utf-8")


def _yaml_text(splits: list[str]) -> str:
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(NAMES))
    split_lines = "".join(f"{split}: images/{split}\n" for split in splits)
    return f"# lightning_yolo built-in synthetic dataset (generated)\npath: .\n{split_lines}names:\n{names}"


def synthetic_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels.

    Returns:
        ``(image, labels)``: uint8 ``(h, w, 3)`` BGR image and ``(n, 5)`` float32 ``[class, x, y, w, h]``
        normalised labels whose boxes enclose the drawn shapes exactly.
    """
    aw, ah = _ASPECTS[rng.integers(len(_ASPECTS))]
    scale = IMAGE_SIZE / max(aw, ah)
    w, h = int(round(aw * scale)), int(round(ah * scale))
    image = textured_background(h, w, rng)
    n = 0 if rng.random() < _BACKGROUND_ONLY else int(rng.integers(1, _MAX_OBJECTS + 1))
    boxes: list[tuple[int, int, int, int, int]] = []
    for _ in range(n * 4):  # a few attempts per object to find a free spot
        if len(boxes) == n:
            break
        cls, box = int(rng.integers(len(NAMES))), random_box(w, h, rng)
        if all(_overlap(box, b[1:]) == 0 for b in boxes):
            SHAPE_DRAWERS[cls](image, box, _shape_colour(rng))
            boxes.append((cls, *box))
    return image, _normalise(boxes, w, h)


def textured_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour field plus pixel noise and a few thin unlabelled lines."""
    coarse = rng.integers(40, 200, size=(4, 4, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    image += rng.integers(-25, 26, size=(h, w, 3), dtype=np.int16)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(w)), int(rng.integers(h)))
        p2 = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.line(image, p1, p2, tuple(int(v) for v in rng.integers(0, 256, 3)), 1, cv2.LINE_AA)
    return image


def random_box(w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A pixel-edge box ``(x1, y1, x2, y2)`` of side 14-110 px and aspect ratio 0.5-2 inside the image."""
    side = rng.uniform(14, 110)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    bw = int(min(max(side * np.sqrt(aspect), 10), w - 2))
    bh = int(min(max(side / np.sqrt(aspect), 10), h - 2))
    x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    return x1, y1, x1 + bw, y1 + bh


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _shape_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour: one channel high, one low, one anywhere, so shapes stand out from the background."""
    channels = rng.permutation(3)
    colour = np.empty(3, dtype=np.int64)
    colour[channels] = [rng.integers(200, 256), rng.integers(0, 50), rng.integers(0, 256)]
    return tuple(int(v) for v in colour)


def _draw_circle(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box  # an ellipse filling the box; its extreme pixels touch all four sides
    centre = ((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2)
    cv2.ellipse(image, (centre, (x2 - x1 - 1, y2 - y1 - 1), 0), colour, -1)


def _draw_rectangle(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)


def _draw_triangle(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    points = np.array([[x1, y2 - 1], [x2 - 1, y2 - 1], [(x1 + x2 - 1) // 2, y1]], dtype=np.int32)
    cv2.fillPoly(image, [points], colour)


def _draw_cross(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    tw, th = max((x2 - x1) // 4, 2), max((y2 - y1) // 4, 2)  # bar thickness
    xm, ym = (x1 + x2) // 2, (y1 + y2) // 2
    cv2.rectangle(image, (x1, ym - th // 2), (x2 - 1, ym + th // 2), colour, -1)
    cv2.rectangle(image, (xm - tw // 2, y1), (xm + tw // 2, y2 - 1), colour, -1)


SHAPE_DRAWERS: tuple[Callable[[np.ndarray, tuple[int, int, int, int], tuple[int, int, int]], None], ...] = (
    _draw_circle,
    _draw_rectangle,
    _draw_triangle,
    _draw_cross,
)
"""Draw function per class id: ``draw(image, (x1, y1, x2, y2), colour)`` fills exactly that pixel-edge box."""


def _normalise(boxes: list[tuple[int, int, int, int, int]], w: int, h: int) -> np.ndarray:
    if not boxes:
        return np.zeros((0, 5), dtype=np.float32)
    b = np.array(boxes, dtype=np.float64)  # (n, 5) [cls, x1, y1, x2, y2] pixel edges
    xywhn = np.stack(((b[:, 1] + b[:, 3]) / 2 / w, (b[:, 2] + b[:, 4]) / 2 / h, (b[:, 3] - b[:, 1]) / w), axis=1)
    return np.concatenate((b[:, :1], xywhn, ((b[:, 4] - b[:, 2]) / h)[:, None]), axis=1).astype(np.float32)
