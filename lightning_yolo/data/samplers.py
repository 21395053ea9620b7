"""Samplers: rectangular (aspect-ratio sorted) batches sharded over ranks, and the epoch-aware training sampler.

Both are :class:`~torch.utils.data.DistributedSampler` subclasses that shard by an explicit ``(rank, world_size)``,
so Lightning leaves them alone whatever ``Trainer(use_distributed_sampler=...)`` says: it only injects its own
sampler when a loader's sampler is *not* a ``DistributedSampler``.

:class:`RectBatchSampler` yields whole batches (lists of dataset keys). A ``DataLoader`` cannot take it as a
``batch_sampler`` without Lightning trying to replace it, so it is used as the loader's ``sampler`` with
``batch_size=None`` over a :class:`~lightning_yolo.data.dataset.BatchView` of the dataset (each "item" is then a
batch; workers still build one batch each, as with an ordinary batch sampler).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler

EpochFn = Callable[[], int]


def rect_batches(
    shapes_hw: np.ndarray, batch_size: int, imgsz: int, stride: int, pad: float
) -> tuple[list[list[int]], np.ndarray]:
    """Group images of similar aspect ratio into batches and give each batch one letterbox shape (YOLOv5 rect).

    Images are sorted by ``h / w`` and cut into consecutive batches. A batch whose images are all wider than tall
    gets shape ``(imgsz * max_ratio, imgsz)``, all taller than wide ``(imgsz, imgsz / min_ratio)``, otherwise square;
    each side then becomes ``ceil(side / stride + pad) * stride``.

    Args:
        shapes_hw: ``(n, 2)`` image ``[height, width]``.
        batch_size: Images per batch (the last batch may be smaller).
        imgsz: Long side of the letterboxed images before padding.
        stride: The model's max stride.
        pad: Extra stride units of padding (0.5 for validation, 0 for rect training).

    Returns:
        ``(batches, batch_shapes)``: dataset indices per batch, and ``(nb, 2)`` int64 ``[height, width]``.
    """
    shapes = np.asarray(shapes_hw, dtype=np.float64).reshape(-1, 2)
    aspect = shapes[:, 0] / shapes[:, 1]  # h / w
    order = aspect.argsort()  # numpy's default sort, as YOLOv5, so ties fall in the same batches
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    ratios = np.ones((len(batches), 2))
    for b, batch in enumerate(batches):
        low, high = aspect[batch].min(), aspect[batch].max()
        if high < 1:
            ratios[b] = [high, 1]
        elif low > 1:
            ratios[b] = [1, 1 / low]
    batch_shapes = np.ceil(ratios * imgsz / stride + pad).astype(np.int64) * stride
    return batches, batch_shapes


class RectBatchSampler(DistributedSampler):
    """Yield this rank's share of fixed batches: batch ``k`` (in sampling order) goes to rank ``k % world_size``.

    Without ``even`` every image is seen exactly once over all ranks and nothing is duplicated, so ranks may get
    different numbers of batches (exact distributed validation; collectives must wait until the epoch ends).
    With ``placeholder``, a rank left without any batch (fewer batches than ranks) gets one empty batch ``[]``
    instead, because Lightning refuses a loader of length zero on one rank when others have batches; evaluation
    skips empty batches.
    With ``even`` (training) the batch list is padded by repeating batches from its start so every rank gets the
    same count, which step-synchronised training needs.

    Args:
        batches: Dataset indices per batch.
        num_replicas: World size.
        rank: This process's global rank.
        shuffle: Shuffle the batch order each epoch (seeded by ``seed + epoch``).
        seed: Shuffle seed.
        even: Pad to an equal number of batches per rank.
        epoch_fn: Called at the start of each pass for the current epoch (e.g. ``lambda: trainer.current_epoch``);
            otherwise the value given to :meth:`set_epoch` is used.
        with_epoch: Yield ``(index, epoch)`` keys instead of plain indices (the training dataset's key format).
        placeholder: Give a rank without batches one empty batch (not with ``even``, which never leaves one empty).
    """

    def __init__(
        self,
        batches: Sequence[Sequence[int]],
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        even: bool = False,
        epoch_fn: EpochFn | None = None,
        with_epoch: bool = False,
        placeholder: bool = False,
    ) -> None:
        self.batches = [list(b) for b in batches]
        super().__init__(self.batches, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.even, self.epoch_fn, self.with_epoch, self.placeholder = even, epoch_fn, with_epoch, placeholder

    def batch_order(self) -> list[int]:
        """Indices into ``batches`` for this rank and epoch."""
        order = list(range(len(self.batches)))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=generator).tolist()
        if self.even and order:
            total = math.ceil(len(order) / self.num_replicas) * self.num_replicas
            order = (order * math.ceil(total / len(order)))[:total]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list]:
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        order = self.batch_order()
        if self.placeholder and not order and self.batches:
            yield []  # this rank's placeholder batch (see the class docstring)
        for b in order:
            yield [(i, self.epoch) for i in self.batches[b]] if self.with_epoch else list(self.batches[b])

    def __len__(self) -> int:
        n = len(self.batches)
        if self.even:
            return math.ceil(n / self.num_replicas)
        own = len(range(self.rank, n, self.num_replicas))
        return max(own, min(n, 1)) if self.placeholder else own


class EpochSampler(DistributedSampler):
    """The training sampler: a ``DistributedSampler`` (shuffled, padded) yielding ``(index, epoch)`` keys.

    The epoch travels with every key, so augmentations and ``close_mosaic`` depend on the epoch even in
    persistent workers, which never see attribute changes made in the main process after they started.

    Args:
        dataset: The dataset (only its length is used).
        num_replicas: World size (1 without distribution).
        rank: This process's global rank.
        shuffle: Shuffle each epoch with ``seed + epoch``.
        seed: Shuffle seed.
        epoch_fn: Called at the start of each pass for the current epoch; otherwise :meth:`set_epoch`'s value.
    """

    def __init__(
        self,
        dataset: Sequence,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        epoch_fn: EpochFn | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        epoch = self.epoch
        return ((int(i), epoch) for i in super().__iter__())


class WeightedEpochSampler(EpochSampler):
    """YOLOv5's ``--image-weights`` sampler: each epoch draws ``len(dataset)`` images with replacement, weighted by
    :func:`image_weights`, then shards them over the ranks like :class:`EpochSampler`.

    The draw is seeded with ``seed + epoch`` and the weights are the same on every rank (they come from the
    validation metrics, which are reduced over ranks), so every rank draws the same list and takes its own share.

    Args:
        dataset: The dataset (only its length is used).
        weights_fn: Called at the start of each pass: the ``(len(dataset),)`` image weights for this epoch.
        num_replicas, rank, seed, epoch_fn: As :class:`EpochSampler`.
    """

    def __init__(
        self,
        dataset: Sequence,
        weights_fn: Callable[[], np.ndarray],
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        epoch_fn: EpochFn | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, epoch_fn=epoch_fn)
        self.weights_fn = weights_fn

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        weights = np.asarray(self.weights_fn(), dtype=np.float64)
        if not weights.sum() > 0:  # no labels at all: every image alike
            weights = np.ones(len(weights))
        rng = np.random.default_rng(self.seed + self.epoch)
        drawn = rng.choice(len(weights), size=len(weights), replace=True, p=weights / weights.sum())
        drawn = np.concatenate([drawn, drawn[: self.total_size - len(drawn)]])  # pad to a multiple of the ranks
        return ((int(i), self.epoch) for i in drawn[self.rank : self.total_size : self.num_replicas])


def class_weights(labels: Sequence[np.ndarray], nc: int) -> np.ndarray:
    """YOLOv5's ``labels_to_class_weights * nc``: inverse class frequency over the labels, normalised to mean 1.

    A class without labels counts as one label (so it gets the largest weight, not a division by zero).
    """
    classes = np.concatenate([np.asarray(lb)[:, 0] for lb in labels]).astype(int) if len(labels) else np.zeros(0)
    counts = np.bincount(classes, minlength=nc).astype(np.float64)
    counts[counts == 0] = 1
    weights = 1 / counts
    return weights / weights.sum() * nc


def image_weights(labels: Sequence[np.ndarray], nc: int, maps: np.ndarray | None = None) -> np.ndarray:
    """YOLOv5's per-image sampling weights: sum over an image's labels of its class weight ``(1 - mAP)^2 / nc``.

    Args:
        labels: Per image ``(n, 5+)`` arrays whose first column is the class.
        nc: Number of classes.
        maps: ``(nc,)`` per-class mAP@0.5:0.95 of the latest validation; zeros before the first.
    """
    maps = np.zeros(nc) if maps is None else np.asarray(maps, dtype=np.float64)
    cw = class_weights(labels, nc) * (1 - maps) ** 2 / nc
    counts = np.stack([np.bincount(np.asarray(lb)[:, 0].astype(int), minlength=nc) for lb in labels])
    return (counts * cw[None]).sum(1)
