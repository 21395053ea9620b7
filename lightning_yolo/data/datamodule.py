"""``YOLODataModule``: a YOLOv5 dataset yaml (or the built-in synthetic dataset) as Lightning data loaders.

Lifecycle: ``__init__`` validates the settings and the dataset yaml (cheap; raises before any model is built) and
exposes ``names``, ``nc`` and ``data_yaml``; ``prepare_data`` scans every split once per machine (the cache is
written then); ``setup`` builds the datasets on every process from the cache.

Loaders:

- train: shuffled; an :class:`~lightning_yolo.data.samplers.EpochSampler` (a ``DistributedSampler`` over
  ``trainer.world_size`` / ``trainer.global_rank``) sends ``(index, epoch)`` keys, the epoch read from
  ``trainer.current_epoch`` when each epoch's iteration starts. ``close_mosaic`` therefore works with persistent
  workers: the dataset compares the key's epoch with ``max_epochs - close_mosaic`` (set when the loader is built)
  and turns mosaic (and with it mixup) off for the last epochs. Its workers reuse shared-memory batch buffers
  (:mod:`lightning_yolo.data.workers`, with the rest of the loader's operating-system tuning).
- val / test: rect batches (sorted by aspect ratio, pad 0.5, twice the training batch size), each batch given
  whole to rank ``k % world_size``: every image is validated exactly once over all ranks, none is repeated, and
  ranks may run different numbers of batches (so sync metrics at epoch end, never per step).

Every sampler is a ``DistributedSampler`` sharded explicitly, so these loaders are correct whether or not the
Trainer's ``use_distributed_sampler`` is on: Lightning leaves ``DistributedSampler`` loaders alone.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pytorch_lightning import LightningDataModule
from pytorch_lightning.accelerators import CPUAccelerator
from torch.utils.data import DataLoader

from lightning_yolo.data import image_cache
from lightning_yolo.data.cache import files_fingerprint, label_cache_path, load_cache
from lightning_yolo.data.config import (
    DatasetConfig,
    DatasetError,
    image_to_label_file,
    list_image_files,
    load_dataset_config,
)
from lightning_yolo.data.dataset import AugmentSettings, BatchView, YOLODataset, collate, collate_quad
from lightning_yolo.data.samplers import (
    EpochSampler,
    RectBatchSampler,
    WeightedEpochSampler,
    image_weights,
    rect_batches,
)
from lightning_yolo.data.scan import ScanResult, scan_split
from lightning_yolo.data.synthetic import DATASET_NAME, ensure_synthetic_dataset
from lightning_yolo.data.workers import batch_pool, cap_workers, seed_worker, wait_for_label_cache, worker_niceness
from lightning_yolo.errors import ConfigError
from lightning_yolo.settings import DATA_RULES, check_settings, round_to_stride

log = logging.getLogger(__name__)

VAL_PAD = 0.5  # rect validation padding, in strides
PREFETCH_FACTOR = 2  # batches each loader worker prepares ahead (PyTorch's default)


class YOLODataModule(LightningDataModule):
    """Training, validation and test data of a YOLOv5-format dataset.

    Args:
        data: Dataset yaml path (YOLOv5 format), or ``synthetic`` for the built-in generated dataset.
        imgsz: Image size in pixels (long side); rounded up to a multiple of ``stride``.
        batch_size: Training batch size per device (validation uses twice this).
        workers: Data loader worker processes per device (capped at the CPU count; 0 loads in the main process).
        cache: Cache images: ``ram`` (resized images in memory, when they fit), ``disk`` (.npy files in the
            cache folder) or null (read image files each time).
        rect: Rectangular training batches (images sorted by aspect ratio, no mosaic).
        image_weights: Draw training images with replacement, weighted by their classes' rarity and by
            ``(1 - mAP)^2`` of the latest validation (YOLOv5's ``--image-weights``); not with ``rect``.
        quad: YOLOv5's quad collate: every 4 training images become one of twice the side (the first one
            upscaled, or all four tiled 2x2, at random); the batch size must be a multiple of 4.
        single_cls: Train as a single-class detector (every class becomes 0).
        hsv_h: HSV hue augmentation (fraction).
        hsv_s: HSV saturation augmentation (fraction).
        hsv_v: HSV value augmentation (fraction).
        degrees: Rotation (+/- degrees).
        translate: Translation (+/- fraction).
        scale: Scale (+/- gain).
        shear: Shear (+/- degrees).
        perspective: Perspective (+/- fraction), range 0-0.001.
        flipud: Up-down flip probability.
        fliplr: Left-right flip probability.
        mosaic: Mosaic probability.
        mixup: MixUp probability.
        copy_paste: Segment copy-paste probability; accepted for YOLOv5 hyp files, no effect with box labels.
        albumentations: Apply YOLOv5's albumentations extras (Blur, MedianBlur, ToGray, CLAHE, p=0.01 each).
        albumentations_extra: More albumentations transforms, e.g. ``[{name: RandomFog, p: 0.1}]``.
        close_mosaic: Turn mosaic off for the last N training epochs (0: never).
        seed: Seed of the shuffling and the augmentations.
        stride: The model's largest stride (image sizes and rect shapes are multiples of it).
        cache_dir: Cache folder for label scans, disk image caches and the synthetic dataset
            (default ``$LIGHTNING_YOLO_CACHE`` or ``~/.cache/lightning_yolo``).
        fast_decode: Decode training JPEGs at least 2x larger than imgsz at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
            scaling) before the final resize: about twice as fast for 12-megapixel photos at 640 px, with slightly
            smoother pixels than YOLOv5's full decode and bilinear shrink. Validation always decodes in full.
        fast_warp: Do training warps that only scale and translate (all of YOLOv5's hyp files) as a crop and a
            bilinear resize, rounded by under a pixel, instead of warpAffine on the whole mosaic canvas; mosaic
            tiles the output does not show are not decoded. Boxes use the rounded warp, so they stay exact.
    """

    def __init__(
        self,
        data: str = DATASET_NAME,
        imgsz: int = 640,
        batch_size: int = 16,
        workers: int = 8,
        cache: Literal["ram", "disk"] | None = None,
        rect: bool = False,
        image_weights: bool = False,
        quad: bool = False,
        single_cls: bool = False,
        hsv_h: float = 0.015,
        hsv_s: float = 0.7,
        hsv_v: float = 0.4,
        degrees: float = 0.0,
        translate: float = 0.1,
        scale: float = 0.5,
        shear: float = 0.0,
        perspective: float = 0.0,
        flipud: float = 0.0,
        fliplr: float = 0.5,
        mosaic: float = 1.0,
        mixup: float = 0.0,
        copy_paste: float = 0.0,
        albumentations: bool = True,
        albumentations_extra: list[dict[str, Any]] | None = None,
        close_mosaic: int = 0,
        seed: int = 0,
        stride: int = 32,
        cache_dir: str | None = None,
        fast_decode: bool = True,
        fast_warp: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hyp = AugmentSettings(
            hsv_h=hsv_h,
            hsv_s=hsv_s,
            hsv_v=hsv_v,
            degrees=degrees,
            translate=translate,
            scale=scale,
            shear=shear,
            perspective=perspective,
            flipud=flipud,
            fliplr=fliplr,
            mosaic=mosaic,
            mixup=mixup,
            copy_paste=copy_paste,
        )
        check_settings("data", self.hparams, DATA_RULES)  # before any file is read: a bad value fails fast
        if quad and batch_size % 4:
            raise ConfigError(f"data.quad needs a batch size that is a multiple of 4, got {batch_size}")
        if image_weights and rect:
            raise ConfigError("data.image_weights and data.rect exclude each other (rect batches are not drawn)")
        self.imgsz = round_to_stride(imgsz, stride)
        self.batch_size, self.stride, self.cache, self.cache_dir = batch_size, stride, cache, cache_dir
        self.workers = cap_workers(workers)
        self.rect, self.single_cls, self.close_mosaic, self.seed = rect, single_cls, close_mosaic, seed
        self.image_weights, self.quad = image_weights, quad
        self.fast_decode, self.fast_warp = fast_decode, fast_warp
        self.use_albumentations, self.albumentations_extra = albumentations, list(albumentations_extra or [])
        check_albumentations(self.albumentations_extra)
        self.data_yaml = resolve_data(data, cache_dir)
        self.config: DatasetConfig = load_dataset_config(self.data_yaml)
        self.names: list[str] = ["item"] if single_cls and self.config.nc != 1 else list(self.config.names)
        self.nc: int = len(self.names)
        self.scans: dict[str, ScanResult] = {}
        self.datasets: dict[str, YOLODataset] = {}
        self._ram_fits: bool | None = None  # cache='ram': whether the splits of the first setup fit together

    # ------------------------------------------------------------------------------------------------ stages
    def prepare_data(self) -> None:
        """Scan every split once per machine (fills the label cache; logs every problem and a summary).

        Under DDP the scan moves to :meth:`setup` (see :meth:`scan`): Lightning holds every other process in a
        barrier while this hook runs, and a long scan would outlast the collective timeout.
        """
        trainer = self._attached()
        if trainer is not None and getattr(trainer, "world_size", 1) > 1:
            return
        for split in self.config.splits:
            self.scans[split] = self.scan(split, verbose=True)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train + val, ``validate``: val, ``test``: test or val)."""
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": (self.test_split,)}.get(stage or "fit", ())
        self._plan_ram_cache([s for s in wanted if s not in self.datasets])
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    @property
    def test_split(self) -> str:
        """The split ``test_dataloader`` uses: ``test`` when the yaml has one, else ``val``."""
        return "test" if "test" in self.config.splits else "val"

    def scan(self, split: str, verbose: bool | None = None) -> ScanResult:
        """Scan one split (or read it from the cache); the result is kept for :meth:`build_dataset`."""
        if split in self.scans:
            return self.scans[split]
        sources, what = self.config.splits[split], f"{self.config.yaml_path} '{split}'"
        files = list_image_files(sources, self.config.root, what=what)
        trainer = self._attached()
        if trainer is not None and getattr(trainer, "local_rank", 0) != 0:
            self._wait_for_cache(files, split)  # the node's first process scans; the others read its cache
        quiet = not self._is_global_zero()
        result = scan_split(
            files,
            self.config.names,
            split=split,
            sources=self.config.splits[split],
            workers=(os.cpu_count() or 1) if self.workers else 0,  # the scan runs on every core
            cache_dir=self.cache_dir,
            progress=not quiet,
            verbose=not quiet if verbose is None else verbose,
        )
        self.scans[split] = result
        return result

    def _wait_for_cache(self, files: list, split: str) -> None:
        """Poll (no collective) until the label cache of ``split`` is valid for ``files``."""
        names, image_files = self.config.names, [str(f) for f in files]
        fingerprint = files_fingerprint(image_files, [image_to_label_file(f) for f in image_files], names)
        path = label_cache_path(self.config.splits[split], self.cache_dir)
        seen: list[int] = []

        def ready() -> bool:
            stamp = path.stat().st_mtime_ns if path.is_file() else 0
            if not stamp or stamp in seen:  # parse each written version once
                return False
            seen.append(stamp)
            return load_cache(path, fingerprint) is not None

        if not wait_for_label_cache(ready, path):
            log.info("%s: label cache folder not writable, scanning on this process too", split)

    def _plan_ram_cache(self, splits: list[str]) -> None:
        """With ``cache='ram'``, check the splits about to be built against one memory budget, all together.

        Each dataset checks its own split again when it is built (then against the memory left after the ones
        before it); checked alone, train and val could each fit while both together do not.
        """
        if self.cache != "ram" or not splits or self._ram_fits is not None:
            return
        shapes = np.concatenate([self.scan(split).shapes.reshape(-1, 2) for split in splits])
        what = f"{len(shapes)} {'+'.join(splits)} images"
        self._ram_fits = image_cache.ram_cache_fits(shapes, self.imgsz, self._devices_per_node(), what=what)

    def build_dataset(self, split: str) -> YOLODataset:
        """The dataset of one split: augmented for ``train``, rect-batched (pad 0.5) otherwise."""
        train = split == "train"
        dataset = YOLODataset(
            self.scan(split),
            imgsz=self.imgsz,
            augment=train,
            hyp=self.hyp,
            stride=self.stride,
            cache=None if self.cache == "ram" and self._ram_fits is False else self.cache,
            single_cls=self.single_cls,
            albumentations=self.use_albumentations,
            albumentations_extra=self.albumentations_extra,
            seed=self.seed,
            cache_dir=self.cache_dir,
            fast_decode=self.fast_decode,
            fast_warp=self.fast_warp,
            workers=self.workers,
            ram_copies=self._devices_per_node(),
        )
        if not train or self.rect:
            pad = 0.0 if train else VAL_PAD
            batches, shapes = rect_batches(dataset.shapes_hw, self._batch_size(split), self.imgsz, self.stride, pad)
            dataset.set_rect_shapes(batches, shapes)
        return dataset

    # ------------------------------------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; see the module docstring for sharding, epochs and ``close_mosaic``."""
        dataset = self._dataset("train")
        dataset.close_mosaic_epoch = self._close_mosaic_epoch()
        world, rank = self._world()
        if dataset.rect:
            batches, _ = rect_batches(dataset.shapes_hw, self.batch_size, self.imgsz, self.stride, pad=0.0)
            sampler = RectBatchSampler(
                batches, world, rank, shuffle=True, seed=self.seed, even=True, epoch_fn=self._epoch, with_epoch=True
            )
            return self._loader(BatchView(dataset), None, sampler, collate_fn=self._train_collate())
        if self.image_weights:
            sampler = WeightedEpochSampler(dataset, self._image_weights, world, rank, self.seed, self._epoch)
        else:
            sampler = EpochSampler(dataset, world, rank, shuffle=True, seed=self.seed, epoch_fn=self._epoch)
        return self._loader(dataset, self.batch_size, sampler, collate_fn=self._train_collate())

    def _image_weights(self) -> np.ndarray:
        """This epoch's image weights, from the per-class mAP of the latest validation (zeros before it)."""
        trainer = self._attached()
        module = trainer.lightning_module if trainer is not None else None
        results = module.last_results if module is not None else None
        maps = results["maps"].detach().cpu().numpy() if results else None
        return image_weights(self._dataset("train").labels, self.nc, maps)

    def val_dataloader(self) -> DataLoader:
        """Rect validation batches, each image exactly once over all ranks."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Rect batches of the ``test`` split (``val`` when the yaml has no test split)."""
        return self._eval_loader(self.test_split)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        batches, _ = rect_batches(dataset.shapes_hw, self._batch_size(split), self.imgsz, self.stride, VAL_PAD)
        world, rank = self._world()
        sampler = RectBatchSampler(batches, world, rank, shuffle=False, placeholder=True)
        return self._loader(BatchView(dataset), None, sampler, collate_fn=collate_or_empty)

    def _loader(self, dataset: Any, batch_size: int | None, sampler: Any, collate_fn: Any = collate) -> DataLoader:
        workers = self._loader_workers()
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            prefetch_factor=PREFETCH_FACTOR if workers > 0 else None,
            worker_init_fn=functools.partial(seed_worker, niceness=worker_niceness(self._cpu_training())),
        )

    def _loader_workers(self) -> int:
        # more workers than images per batch would idle
        return min(cap_workers(self.workers, self._devices_per_node()), self.batch_size)

    def _train_collate(self) -> Any:
        """Training batches reuse shared-memory buffers in the workers when those fit (:func:`batch_pool`)."""
        batch_bytes = self.batch_size * self.imgsz * self.imgsz * 3
        pool = batch_pool(self._loader_workers(), PREFETCH_FACTOR + 1, batch_bytes)
        batcher = collate_quad if self.quad else collate
        return batcher if pool is None else functools.partial(batcher, pool=pool)

    def _cpu_training(self) -> bool:
        """Whether the attached Trainer runs the model on CPUs (see :func:`worker_niceness`)."""
        trainer = self._attached()
        return isinstance(getattr(trainer, "accelerator", None), CPUAccelerator)

    # ------------------------------------------------------------------------------------------------ helpers
    def _dataset(self, split: str) -> YOLODataset:
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        return self.datasets[split]

    def _batch_size(self, split: str) -> int:
        return self.batch_size if split == "train" else 2 * self.batch_size

    def _attached(self) -> Any:
        """The Trainer when this data module is attached to one, else None."""
        return getattr(self, "trainer", None)

    def _world(self) -> tuple[int, int]:
        trainer = self._attached()
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _is_global_zero(self) -> bool:
        trainer = self._attached()
        return trainer is None or trainer.is_global_zero

    def _devices_per_node(self) -> int:
        trainer = self._attached()
        return max(int(getattr(trainer, "num_devices", 1) or 1), 1) if trainer is not None else 1

    def _epoch(self) -> int:
        """The epoch about to be iterated (``trainer.current_epoch`` when iteration starts)."""
        trainer = self._attached()
        return int(trainer.current_epoch) if trainer is not None else self._dataset("train").epoch

    def _close_mosaic_epoch(self) -> int | None:
        """First epoch without mosaic, from ``trainer.max_epochs``; None when mosaic stays on."""
        if not self.close_mosaic:
            return None
        trainer = self._attached()
        max_epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        if max_epochs is None or max_epochs < 0:
            log.warning("close_mosaic=%d ignored: the Trainer has no max_epochs", self.close_mosaic)
            return None
        return max(max_epochs - self.close_mosaic, 0)

    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """For use without a Trainer: the epoch of integer-key samples and, with ``max_epochs``, ``close_mosaic``."""
        dataset = self._dataset("train")
        dataset.set_epoch(epoch)
        if max_epochs is not None and self.close_mosaic:
            dataset.close_mosaic_epoch = max(max_epochs - self.close_mosaic, 0)


def collate_or_empty(samples: list[Any]) -> dict[str, Any]:
    """:func:`collate`, and an empty batch (``img`` of shape ``(0, 3, 0, 0)``) for a rank's placeholder batch."""
    if samples:
        return collate(samples)
    return {"img": torch.zeros(0, 3, 0, 0, dtype=torch.uint8), "targets": torch.zeros(0, 6), "paths": [], "shapes": []}


def resolve_data(data: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The dataset yaml path: ``synthetic`` generates the built-in dataset (first use only) and returns its yaml."""
    if str(data) == DATASET_NAME:
        return ensure_synthetic_dataset(cache_dir)
    path = Path(data).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: dataset yaml not found (use 'synthetic' for the built-in dataset)")
    return path


def check_albumentations(specs: list[dict[str, Any]]) -> None:
    """Build each user albumentations transform once, so a bad name or argument fails now, naming its entry.

    Raises:
        ConfigError: ``data.albumentations_extra[i]: <what is wrong>`` for the first bad entry.
    """
    if not specs:
        return
    from lightning_yolo.data.albument import build_transform  # imports albumentations: only when extras are given

    for i, spec in enumerate(specs):
        try:
            build_transform(spec)
        except ValueError as err:
            raise ConfigError(f"data.albumentations_extra[{i}]: {err}") from None
