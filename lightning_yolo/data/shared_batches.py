"""Shared-memory batch buffers that loader workers reuse once the main process has freed them.

A loader worker hands each batch to the main process in shared memory. A fresh shared segment per batch makes the
kernel allocate and zero every 4 KiB page on first touch: about 300 page faults for each 640 px image, which on a
small VM is 0.65 ms, a tenth of the worker's whole time per image. With a :class:`SharedBatchPool` each worker
keeps a few segments and writes a new batch into one that the main process no longer uses.

How a worker knows: every pooled batch travels with a ticket ``(worker, slot, generation)``, and the slot's entry in
a small shared flag table holds that generation while the batch is in use. In the main process the ticket is
unpacked together with the batch image (:func:`_received`), which puts a finalizer on the image's storage. The
storage dies only when the last tensor, view or NumPy array on that memory is gone, and then the finalizer clears
the flag. A worker only writes into a slot whose flag is clear, so a batch the main process still holds, however
long and through whatever views, is never overwritten. When every slot is busy (or a batch was lost without being
unpacked), the worker falls back to a fresh segment, which is always correct.
"""

from __future__ import annotations

import itertools
import math
import os
import weakref
from typing import Any

import torch
from torch.utils.data import get_worker_info

_POOLS: weakref.WeakValueDictionary[str, SharedBatchPool] = weakref.WeakValueDictionary()
"""Pools created in this process, by id: the main process finds a received ticket's flag table here."""
_IDS = itertools.count()


def new_batch_tensor(shape: tuple[int, ...], storage: torch.UntypedStorage | None = None) -> torch.Tensor:
    """A contiguous uint8 tensor of ``shape``: on ``storage`` if given, else in a fresh shared-memory segment in a
    loader worker (what ``default_collate`` does there) and in private memory elsewhere."""
    if storage is None and get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    if storage is None:
        storage = torch.UntypedStorage._new_shared(math.prod(int(n) for n in shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)


class SharedBatchPool:
    """Per-worker shared-memory batch buffers, reused after the main process frees them.

    Create it in the main process and give it to the loader's collate function; workers get copies that share
    the flag table. In the main process (``num_workers=0``) it does nothing.

    Args:
        workers: Loader worker processes.
        slots: Buffers per worker. A worker has up to ``prefetch_factor`` batches in flight and the training loop
            holds one or two more, so ``prefetch_factor + 1`` covers the steady state. Each buffer keeps the size
            of the largest batch it held.
    """

    def __init__(self, workers: int, slots: int) -> None:
        self.id = f"{os.getpid()}-{next(_IDS)}"
        self.flags = torch.zeros((max(workers, 1), max(slots, 1)), dtype=torch.int64).share_memory_()
        self.counts = torch.zeros((max(workers, 1), 2), dtype=torch.int64).share_memory_()  # reused / fresh, per worker
        self._buffers: dict[int, torch.UntypedStorage] = {}  # this worker's buffers, by slot
        self._generation = 0
        _POOLS[self.id] = self

    def __getstate__(self) -> dict[str, Any]:
        return {"id": self.id, "flags": self.flags, "counts": self.counts}  # buffers stay with their process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _buffers={}, _generation=0)

    def batch_tensor(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, int, int] | None]:
        """A uint8 tensor of ``shape`` in shared memory and its ticket (None when not pooled).

        In a worker: a free slot's buffer (enlarged if too small) with its flag set, else a fresh segment.
        Outside a worker: plain private memory and no ticket.
        """
        info = get_worker_info()
        if info is None or info.id >= len(self.flags):
            return new_batch_tensor(shape), None
        storage, ticket = self._take(info.id, math.prod(int(n) for n in shape))
        return new_batch_tensor(shape, storage), ticket

    def _take(self, worker: int, nbytes: int) -> tuple[torch.UntypedStorage | None, tuple[int, int, int] | None]:
        row = self.flags[worker]
        for slot in range(len(row)):
            if int(row[slot]) != 0:
                continue  # the main process still holds this slot's last batch
            buffer = self._buffers.get(slot)
            reused = buffer is not None and buffer.nbytes() >= nbytes
            if not reused:
                buffer = self._buffers[slot] = torch.UntypedStorage._new_shared(nbytes)
            self._generation += 1
            row[slot] = self._generation
            self.counts[worker, 0 if reused else 1] += 1
            return buffer, (worker, slot, self._generation)
        self.counts[worker, 1] += 1
        return None, None

    def wrap(self, img: torch.Tensor, ticket: tuple[int, int, int] | None) -> Any:
        """What the collate function puts in the batch: ``img`` itself, or a wrapper that unpacks into ``img``."""
        return img if ticket is None else _Pooled(self.id, ticket, img)


class _Pooled:
    """A pooled batch image on its way to the main process; unpickles into the plain tensor."""

    def __init__(self, pool_id: str, ticket: tuple[int, int, int], img: torch.Tensor) -> None:
        self.pool_id, self.ticket, self.img = pool_id, ticket, img

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _received, (self.pool_id, self.ticket, self.img)


def _received(pool_id: str, ticket: tuple[int, int, int], img: torch.Tensor) -> torch.Tensor:
    """Unpickled in the main process: free the slot once nothing uses the image's memory any more."""
    pool = _POOLS.get(pool_id)
    if pool is not None:
        weakref.finalize(img.untyped_storage(), _release, pool.flags, *ticket).atexit = False  # no use at exit
    return img  # a pool unknown here (the batch reached another process) keeps its slot busy: never unsafe


def _release(flags: torch.Tensor, worker: int, slot: int, generation: int) -> None:
    if int(flags[worker, slot]) == generation:  # only this batch's own ticket frees the slot
        flags[worker, slot] = 0
