"""``YOLODataset``: scanned images and labels -> augmented, letterboxed training / validation samples.

A sample is ``(img, labels, path, shapes)``:

- ``img``: uint8 tensor ``(3, H, W)``, RGB, a channels-last view of ``(H, W, 3)`` memory (no transposing copy;
  :func:`collate` stacks such samples into a channels-last batch, the layout the model runs in);
- ``labels``: float32 tensor ``(n, 6)`` ``[0, class, x, y, w, h]`` normalised to ``img`` (the first column is
  filled with the image's index in the batch by :func:`collate`);
- ``path``: the image file;
- ``shapes``: ``((h0, w0), ((ratio_h, ratio_w), (pad_w, pad_h)))`` mapping ``img`` pixels back to the original
  image, or None for mosaic samples (which have no single original).

Inside the pipeline labels use the internal format of :mod:`lightning_yolo.data.transforms`
(``(n, 5)`` float32 ``[class, x1, y1, x2, y2]`` in pixels of the current image).

Randomness: a sample's augmentation is drawn from ``np.random.default_rng([seed, epoch, index])``, so it depends
only on the seed, the epoch and the image, never on worker count or order. The training sampler passes keys
``(index, epoch)``; an integer key uses :attr:`YOLODataset.epoch`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_yolo.data import image_cache
from lightning_yolo.data.config import DatasetError
from lightning_yolo.data.images import jpeg_reduction, load_image_bgr
from lightning_yolo.data.label_table import LabelTable
from lightning_yolo.data.mosaic import load_mosaic
from lightning_yolo.data.scan import ScanResult
from lightning_yolo.data.transforms import (
    augment_hsv_to_rgb,
    letterbox,
    letterbox_labels,
    mixup,
    random_flip,
    random_perspective,
    resize_to_imgsz,
    resized_hw,
)
from lightning_yolo.data.workers import SharedBatchPool, stack_images
from lightning_yolo.ops.boxes import xywhn_to_xyxy, xyxy_to_xywhn

log = logging.getLogger(__name__)

MAX_LOAD_RETRIES = 20
"""Unreadable images replaced in a row before a sample gives up with an error."""

Key = int | tuple[int, int]
Sample = tuple[torch.Tensor, torch.Tensor, str, Any]


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation settings, named and defaulted as YOLOv5's ``hyp.scratch-low.yaml``.

    Attributes:
        hsv_h: Hue gain (fraction).
        hsv_s: Saturation gain (fraction).
        hsv_v: Value gain (fraction).
        degrees: Rotation range (+/- degrees).
        translate: Translation range (+/- fraction of the image size).
        scale: Scale range (+/- gain).
        shear: Shear range (+/- degrees).
        perspective: Perspective range (+/- fraction; 0 to 0.001 is sensible).
        flipud: Probability of an up-down flip.
        fliplr: Probability of a left-right flip.
        mosaic: Probability of a 4-image mosaic.
        mixup: Probability of MixUp (on mosaic samples).
        copy_paste: Segment copy-paste probability; no effect, since lightning_yolo keeps boxes only (as
            YOLOv5 with box labels).
    """

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0

    def geometry(self) -> dict[str, float]:
        """Warp ranges as keyword arguments of ``random_perspective`` and ``load_mosaic``."""
        return {k: getattr(self, k) for k in ("degrees", "translate", "scale", "shear", "perspective")}


class YOLODataset(Dataset):
    """Images and labels of one scanned split, loaded, cached, augmented and letterboxed.

    Args:
        scan: The split's scan (usable images, shapes, labels).
        imgsz: Training / inference image size (long side, a multiple of ``stride``).
        augment: Training augmentations on (mosaic, mixup, perspective, albumentations, HSV, flips).
        hyp: Augmentation settings (default: ``hyp.scratch-low``).
        stride: The model's max stride.
        cache: None, ``"ram"`` or ``"disk"`` (see :mod:`lightning_yolo.data.image_cache`).
        single_cls: Merge every class into class 0.
        albumentations: Apply YOLOv5's albumentations extras (Blur, MedianBlur, ToGray, CLAHE at p=0.01) when
            augmenting.
        albumentations_extra: Further albumentations transforms, e.g. ``[{"name": "RandomFog", "p": 0.1}]``.
        seed: Augmentation seed.
        cache_dir: Cache folder for ``cache="disk"``.
        workers: Threads used to fill an image cache.
        ram_copies: Processes on this machine that each hold a RAM cache (for the memory check).
        fast_decode: When augmenting, decode a JPEG that is at least 2x larger than ``imgsz`` at 1/2, 1/4 or 1/8
            scale (:func:`lightning_yolo.data.images.jpeg_reduction`) before the final resize. Never used for
            evaluation, which decodes in full as YOLOv5's val.py does.
        fast_warp: When augmenting, realise warps that only scale and translate (every YOLOv5 hyp file) as a
            crop and a resize after rounding them by under a pixel (:mod:`lightning_yolo.data.warp`); mosaics
            then assemble only the part of the canvas the output shows and decode only the tiles it shows.
    """

    def __init__(
        self,
        scan: ScanResult,
        imgsz: int = 640,
        augment: bool = False,
        hyp: AugmentSettings | None = None,
        stride: int = 32,
        cache: str | None = None,
        single_cls: bool = False,
        albumentations: bool = True,
        albumentations_extra: Sequence[Mapping[str, Any]] = (),
        seed: int = 0,
        cache_dir: str | Path | None = None,
        workers: int = 0,
        ram_copies: int = 1,
        fast_decode: bool = True,
        fast_warp: bool = True,
    ) -> None:
        if not len(scan):
            raise DatasetError(f"{scan.split}: no usable images (see the warnings above)")
        self.image_files, self.split = list(scan.image_files), scan.split
        self.shapes_hw = np.asarray(scan.shapes, dtype=np.int64).reshape(-1, 2)
        labels = scan.labels if isinstance(scan.labels, LabelTable) else LabelTable.from_arrays(scan.labels)
        # (k, 5) [class, x, y, w, h] normalised per image: the scan's read-only table, shared, never copied per image
        self.labels: LabelTable = labels.with_classes(0.0) if single_cls else labels
        self.imgsz, self.augment, self.stride, self.seed = imgsz, augment, stride, seed
        self.fast_decode = fast_decode and augment
        self.fast_warp = fast_warp
        self.hyp = hyp or AugmentSettings()
        self.epoch = 0
        self.close_mosaic_epoch: int | None = None
        self.target_shapes: np.ndarray | None = None  # (n, 2) [h, w] letterbox shape per image in rect mode
        self.cache_dir, self.load_failures = cache_dir, torch.zeros(1, dtype=torch.int64).share_memory_()
        self.albumentations = _build_albumentations(augment, albumentations, albumentations_extra)
        self._unreadable: set[int] = set()  # per process: images found unreadable after the scan
        self._ram: list[np.ndarray | None] | None = None
        self._npy: list[Path] | None = None
        self._setup_cache(cache, workers, ram_copies)

    # ------------------------------------------------------------------------------------------------ public
    def __len__(self) -> int:
        return len(self.image_files)

    @property
    def shapes_wh(self) -> np.ndarray:
        """``(n, 2)`` ``[width, height]`` of the original images (YOLOv5's ``dataset.shapes``)."""
        return self.shapes_hw[:, ::-1].copy()

    @property
    def rect(self) -> bool:
        """True when images are letterboxed to per-batch rectangular shapes (no mosaic then)."""
        return self.target_shapes is not None

    def set_rect_shapes(self, batches: Sequence[Sequence[int]], batch_shapes: np.ndarray) -> None:
        """Letterbox each image to its batch's ``(h, w)`` (see :func:`lightning_yolo.data.samplers.rect_batches`)."""
        shapes = np.zeros((len(self), 2), dtype=np.int64)
        for batch, shape in zip(batches, np.asarray(batch_shapes), strict=True):
            shapes[list(batch)] = shape
        self.target_shapes = shapes

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for integer keys (the training sampler sends the epoch with every key instead)."""
        self.epoch = epoch

    def mosaic_active(self, epoch: int) -> bool:
        """Whether mosaic may be used in ``epoch`` (augmenting, not rect, before ``close_mosaic_epoch``)."""
        closed = self.close_mosaic_epoch is not None and epoch >= self.close_mosaic_epoch
        return self.augment and not self.rect and not closed and self.hyp.mosaic > 0

    def __getitem__(self, key: Key) -> Sample:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), self.epoch)
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.mosaic_active(epoch) and rng.random() < self.hyp.mosaic:
            index, img, labels = self._mosaic(index, rng)
            if rng.random() < self.hyp.mixup:
                _, img2, labels2 = self._mosaic(int(rng.integers(len(self))), rng)
                img, labels = mixup(img, labels, img2, labels2, rng=rng)
            shapes = None
        else:
            index, img, labels, shapes = self._letterboxed(index, rng)
            if self.augment:
                img, labels = random_perspective(img, labels, **self.hyp.geometry(), rng=rng, snap=self.fast_warp)
        if self.augment:
            img, labels = self._colour_and_flips(img, labels, rng)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # a new contiguous array, much faster than a transpose
        return _to_sample(img, labels, self.image_files[index], shapes)

    # ------------------------------------------------------------------------------------------------ pipeline
    def _colour_and_flips(self, img: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple:
        """Albumentations, HSV and flips of a BGR image; returns the image in RGB order."""
        if self.albumentations is not None:
            img, labels = self.albumentations(img, labels, rng)
        img = augment_hsv_to_rgb(img, self.hyp.hsv_h, self.hyp.hsv_s, self.hyp.hsv_v, rng=rng)
        return random_flip(img, labels, flipud_p=self.hyp.flipud, fliplr_p=self.hyp.fliplr, rng=rng)

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        """A mosaic of ``index`` and 3 random images, decoding only the tiles it shows (:func:`load_mosaic`)."""
        return load_mosaic(self, index, rng, self.imgsz, self.hyp.geometry(), snap=self.fast_warp)

    def _letterboxed(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray, Any]:
        """One image letterboxed to ``imgsz`` (or its rect batch shape), with its labels and ``shapes``."""
        index, img, (h0, w0), (h, w) = self._load(index, rng)
        shape = tuple(int(v) for v in self.target_shapes[index]) if self.rect else self.imgsz
        img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
        labels = letterbox_labels(self._pixel_labels(index, (h, w)), ratio, pad)
        shapes = ((h0, w0), ((h / h0 * ratio[1], w / w0 * ratio[0]), pad))
        return index, img, labels, shapes

    def tile_hw(self, index: int) -> tuple[int, int]:
        """``(h, w)`` of image ``index`` after :meth:`load_resized`, without loading it."""
        if self._ram is not None and self._ram[index] is not None:
            return self._ram[index].shape[:2]
        return resized_hw(self.shapes_hw[index], self.imgsz)

    def load_tile(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        """A mosaic tile: ``(index used, resized image, its pixel labels)`` (see :meth:`_load` for the index)."""
        index, img, _, hw = self._load(index, rng)
        return index, img, self._pixel_labels(index, hw)

    def _pixel_labels(self, index: int, hw: tuple[int, int]) -> np.ndarray:
        """Labels of image ``index`` in the internal format, in pixels of its ``hw``-sized resized image."""
        labels = self.labels[index].copy()
        labels[:, 1:5] = xywhn_to_xyxy(labels[:, 1:5], w=hw[1], h=hw[0])
        return labels

    # ------------------------------------------------------------------------------------------------ loading
    def _load(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, tuple, tuple]:
        """Image ``index`` resized to long side ``imgsz``; an unreadable image is replaced by a random other one.

        Each unreadable image is logged once per process and counted in ``load_failures`` (shared with workers).

        Returns:
            ``(index used, img, (h0, w0), (h, w))``.
        """
        for _ in range(MAX_LOAD_RETRIES):
            if index not in self._unreadable:
                try:
                    return (index, *self.load_resized(index))
                except DatasetError as err:
                    self._unreadable.add(index)
                    self.load_failures += 1
                    log.warning("%s; using other images instead (%d unreadable)", err, int(self.load_failures))
            index = int(rng.integers(len(self)))
        raise DatasetError(f"{MAX_LOAD_RETRIES} unreadable images in a row; were dataset files deleted or moved?")

    def load_resized(self, index: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Image ``index`` (from the RAM or disk cache when present) resized so its long side is ``imgsz``.

        Returns:
            ``(img, (h0, w0), (h, w))``: uint8 BGR ``(h, w, 3)`` image, original and resized height and width.

        Raises:
            DatasetError: the image cannot be read any more (e.g. deleted after the scan).
        """
        h0, w0 = (int(v) for v in self.shapes_hw[index])
        img = self._ram[index] if self._ram is not None else None
        if img is None and self._npy is not None:
            img = image_cache.load_npy(self._npy[index])
        if img is None:
            img = self._decode_resized(index)
        return img, (h0, w0), img.shape[:2]

    def _decode_resized(self, index: int) -> np.ndarray:
        hw = tuple(int(v) for v in self.shapes_hw[index])
        reduction = jpeg_reduction(max(hw), self.imgsz) if self.fast_decode else 1
        img = load_image_bgr(self.image_files[index], reduction=reduction)
        # after a reduced decode, resize to exactly the size a full decode would reach
        return resize_to_imgsz(img, self.imgsz, self.augment, original_hw=hw if reduction > 1 else None)[0]

    def _setup_cache(self, cache: str | None, workers: int, ram_copies: int) -> None:
        if cache is None:
            return
        if cache == "ram":
            what = f"{len(self)} {self.split} images"
            if image_cache.ram_cache_fits(self.shapes_hw, self.imgsz, ram_copies, what=what):
                log.info("caching %d images in RAM", len(self))
                self._ram = image_cache.fill_ram_cache(len(self), self._decode_resized, workers, what)
        elif cache == "disk":
            key = (self.imgsz, self.augment, self.cache_dir, self.fast_decode)
            self._npy = [image_cache.disk_cache_path(f, *key) for f in self.image_files]
            written = image_cache.fill_disk_cache(self._npy, self._decode_resized, workers, f"{self.split} images")
            log.info("disk image cache: %d of %d images written to %s", written, len(self), self._npy[0].parent)
        else:
            raise ValueError(f"cache must be None, 'ram' or 'disk', got {cache!r}")


def _build_albumentations(augment: bool, extras: bool, transforms: Sequence[Mapping[str, Any]]) -> Any:
    if not augment or not (extras or transforms):
        return None
    from lightning_yolo.data.albument import AlbumentationsAugment  # imports albumentations: only when used

    return AlbumentationsAugment(transforms=list(transforms), yolov5_extras=extras)


def _to_sample(img: np.ndarray, labels: np.ndarray, path: str, shapes: Any) -> Sample:
    """``(img RGB HWC, pixel xyxy labels)`` -> ``(uint8 (3, H, W) RGB tensor, (n, 6) xywhn tensor)``."""
    h, w = img.shape[:2]
    out = torch.zeros((len(labels), 6), dtype=torch.float32)
    if len(labels):
        xywhn = xyxy_to_xywhn(labels[:, 1:5].astype(np.float32), w=w, h=h, clip=True, eps=1e-3)
        out[:, 1] = torch.from_numpy(labels[:, 0].astype(np.float32))
        out[:, 2:] = torch.from_numpy(np.ascontiguousarray(xywhn, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), out, path, shapes


def collate(samples: Sequence[Sample], pool: SharedBatchPool | None = None) -> dict[str, Any]:
    """Stack samples into the training batch dict.

    Args:
        samples: Samples of one batch.
        pool: Reusable shared-memory buffers for the batch image when running in a loader worker.

    Returns:
        ``{"img": uint8 (B, 3, H, W) channels-last, "targets": float32 (n, 6) [batch index, class, x, y, w, h],
        "paths": list[str], "shapes": list}``.
    """
    imgs, labels, paths, shapes = zip(*samples, strict=True)
    targets = []
    for i, lb in enumerate(labels):
        lb = lb.clone()
        lb[:, 0] = i
        targets.append(lb)
    img = stack_images(imgs, pool)
    return {"img": img, "targets": torch.cat(targets), "paths": list(paths), "shapes": list(shapes)}


QUAD_SHIFT = torch.tensor([[0.0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]])
"""Label shifts ``[index, class, x, y, w, h]`` of the image below (y + 1) and the image to the right (x + 1)."""
QUAD_SCALE = torch.tensor([1, 1, 0.5, 0.5, 0.5, 0.5])
"""Normalised boxes of a 2x2 tile shrink by half."""


def collate_quad(
    samples: Sequence[Sample], pool: SharedBatchPool | None = None, draw: Callable[[], float] = random.random
) -> dict[str, Any]:
    """YOLOv5's ``collate_fn4`` (``--quad``): every 4 samples become one image of twice the side.

    With probability 0.5 the group's first image is upscaled 2x (bilinear) with its labels; otherwise the four are
    tiled, images 0 and 1 on the left (1 below 0), 2 and 3 on the right, labels shifted and halved. The training
    loss of such a batch is scaled by 4 (``YOLOModule``'s ``quad``).

    Args:
        samples: A batch whose length is a multiple of 4 (a trailing remainder is dropped, as YOLOv5 does).
        pool: As :func:`collate`.
        draw: Uniform [0, 1) draws deciding each group (Python's generator, seeded per worker, as YOLOv5's).
    """
    merged = []
    for g in range(len(samples) // 4):
        group = samples[4 * g : 4 * g + 4]
        (img, labels, path, shapes) = group[0]
        if draw() < 0.5:
            hwc = cv2.resize(img.permute(1, 2, 0).numpy(), None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
            merged.append((torch.from_numpy(hwc).permute(2, 0, 1), labels.clone(), path, shapes))
            continue
        imgs = [s[0] for s in group]
        tile = torch.cat((torch.cat(imgs[:2], 1), torch.cat(imgs[2:], 1)), 2)  # (3, 2H, 2W)
        shifts = (0, QUAD_SHIFT[0], QUAD_SHIFT[1], QUAD_SHIFT[0] + QUAD_SHIFT[1])
        boxes = torch.cat([s[1] + shift for s, shift in zip(group, shifts, strict=True)]) * QUAD_SCALE
        merged.append((tile, boxes, path, shapes))
    return collate(merged, pool)


class BatchView(Dataset):
    """A dataset whose items are whole batches: ``view[[k1, k2, ...]] == [dataset[k1], dataset[k2], ...]``.

    Used with a batch-yielding sampler and ``DataLoader(batch_size=None)``; see
    :mod:`lightning_yolo.data.samplers`.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, keys: Sequence[Key]) -> list[Sample]:
        return [self.dataset[k] for k in keys]
