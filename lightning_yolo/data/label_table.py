"""``LabelTable``: the labels of every image of a split in one array, read as a sequence of per-image arrays.

One ``(N, 5)`` float32 array holds all boxes and an ``(n + 1,)`` int64 array the offsets of each image's rows, so a
split of 120,000 images is two objects instead of 120,000. Loader worker processes forked from the process that
built it read the same pages: nothing touches per-image Python objects (whose reference counts would otherwise
copy the pages they sit on, image after image, over an epoch). The arrays are read-only; code that changes labels
works on a copy (``table[i].copy()``) or builds a new table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np


class LabelTable(Sequence[np.ndarray]):
    """``table[i]`` is image ``i``'s ``(k, 5)`` float32 ``[class, x, y, w, h]`` labels (a read-only view).

    Args:
        boxes: ``(N, 5)`` float32 rows of all images, image after image.
        counts: ``(n,)`` rows per image.
    """

    def __init__(self, boxes: np.ndarray, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 5)
        if (counts < 0).any() or int(counts.sum()) != len(boxes):
            raise ValueError(f"label counts sum to {int(counts.sum())} but there are {len(boxes)} boxes")
        self.offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.boxes = boxes
        self.boxes.flags.writeable = False
        self.offsets.flags.writeable = False

    @classmethod
    def from_arrays(cls, arrays: Iterable[np.ndarray]) -> LabelTable:
        """A table of per-image ``(k, 5)`` arrays (copied into one array)."""
        parts = [np.asarray(a, dtype=np.float32).reshape(-1, 5) for a in arrays]
        boxes = np.concatenate(parts) if parts else np.zeros((0, 5), dtype=np.float32)
        return cls(boxes, np.array([len(p) for p in parts], dtype=np.int64))

    @property
    def counts(self) -> np.ndarray:
        """``(n,)`` number of boxes of each image."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"label table index {index} out of range for {n} images")
        return self.boxes[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        boxes, offsets = self.boxes, self.offsets.tolist()
        return (boxes[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True))

    def select(self, indices: np.ndarray) -> LabelTable:
        """A new table of the images ``indices`` (a boolean mask or integer positions), in that order."""
        indices = np.asarray(indices)
        indices = np.flatnonzero(indices) if indices.dtype == bool else indices.astype(np.int64).reshape(-1)
        counts = self.counts[indices]
        starts = self.offsets[:-1][indices]
        new_starts = np.cumsum(counts) - counts
        rows = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - new_starts, counts)
        return LabelTable(self.boxes[rows], counts)

    def with_classes(self, value: float) -> LabelTable:
        """A copy whose every class id is ``value`` (``single_cls``)."""
        boxes = self.boxes.copy()
        boxes[:, 0] = value
        return LabelTable(boxes, self.counts)
