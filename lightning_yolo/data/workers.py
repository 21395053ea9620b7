"""Operating-system tuning of the data loader: worker processes, their memory, shared memory and the CPUs.

Nothing here changes which pixels or labels a batch holds, only how fast and how safely the loader makes and hands
them over, so changing an augmentation needs no reading of this file (and tuning the loader none of the
augmentations):

- :func:`seed_worker`: what each loader worker runs first (seeds, OpenCV threads, priority, malloc thresholds),
  with :func:`worker_niceness` and :func:`keep_freed_image_buffers`.
- :func:`cap_workers`: worker counts within a device's share of the machine's CPUs.
- :class:`SharedBatchPool`, :func:`batch_pool`, :func:`stack_images`: batches built directly in shared-memory
  buffers that the workers reuse once the main process has freed them.
- :func:`wait_for_label_cache`: how a node's other processes wait for its first one's label scan.

This is the one module of the package that uses a private torch function, ``torch.UntypedStorage._new_shared``:
it allocates a batch straight in shared memory, as torch's own ``default_collate`` does in workers. The public
``Tensor.share_memory_()`` would allocate private memory first and copy every batch once more.
``tests/test_public_apis.py`` fails when torch drops it.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import random
import shutil
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

CPU_TRAINING_NICENESS = 19
"""Loader workers' scheduling niceness when the model trains on CPUs: the lowest priority (see
:func:`worker_niceness`)."""

# ------------------------------------------------------------------------------------------------ worker processes


def seed_worker(worker_id: int, niceness: int = 0) -> None:
    """Seed Python's and NumPy's global generators in each loader worker from its torch seed (``worker_init_fn``).

    Augmentations draw from their own per-sample generators (see :mod:`lightning_yolo.data.dataset`); this covers
    third-party code using the global generators. OpenCV threads are turned off inside workers, which are
    already parallel. A positive ``niceness`` lowers the worker's scheduling priority by that much (Unix only).
    Large freed buffers are kept for reuse (:func:`keep_freed_image_buffers`).
    """
    import cv2

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    cv2.setNumThreads(0)
    if niceness > 0 and hasattr(os, "nice"):
        os.nice(niceness)
    keep_freed_image_buffers()


def worker_niceness(cpu_training: bool) -> int:
    """Scheduling niceness of loader workers: the lowest priority (19) when the model trains on CPUs, else 0.

    In CPU training the model's intra-op threads and the loader workers share the same cores; a worker that
    preempts one of those threads stalls all of them at the next synchronisation point. Workers at the lowest
    priority fill the cores' idle moments instead, and still get every core while the training step waits for
    a batch (on 2 cores: about 6% more training images/s). With a GPU, the training process mostly waits for
    the device, and its workers keep normal priority so that nothing can starve the device of batches.
    """
    return CPU_TRAINING_NICENESS if cpu_training else 0


def keep_freed_image_buffers() -> bool:
    """Make glibc's malloc reuse freed multi-megabyte buffers instead of returning them to the system.

    Every sample allocates and frees several image-sized arrays (decoded images, the mosaic canvas, the warped
    image). glibc maps such blocks freshly and unmaps them on free, so each sample pays page faults and the
    kernel's zeroing again; raising the mmap and trim thresholds keeps them in the heap (a worker keeps up to
    256 MiB of freed memory). On 2 cores this cut loader page faults by about half and system CPU time by about
    a third. Returns False where there is no glibc (the call is then a no-op).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def cap_workers(requested: int, devices_per_node: int = 1) -> int:
    """``requested`` workers, at most one device's share of this machine's CPUs (at least 1 CPU; YOLOv5's rule)."""
    return min(requested, max((os.cpu_count() or 1) // devices_per_node, 1))


# ------------------------------------------------------------------------------------------------ shared memory

_POOLS: weakref.WeakValueDictionary[str, SharedBatchPool] = weakref.WeakValueDictionary()
"""Pools created in this process, by id: the main process finds a received ticket's flag table here."""
_IDS = itertools.count()

Ticket = tuple[int, int, int]
"""``(worker, slot, generation)`` of a pooled batch."""


def shared_memory_free() -> int:
    """Free bytes of ``/dev/shm``, where loader workers put their batches (0 where there is no such folder)."""
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return 0


def batch_pool(workers: int, slots: int, batch_bytes: int) -> SharedBatchPool | None:
    """A pool of ``slots`` buffers per worker, or None when there are no workers or the buffers would not fit.

    Pooled buffers stay allocated while the workers live, so the pool is used only while they take at most a
    quarter of the free space of ``/dev/shm``.
    """
    if workers == 0 or workers * slots * batch_bytes > shared_memory_free() / 4:
        return None
    return SharedBatchPool(workers, slots)


def new_batch_tensor(shape: tuple[int, ...], storage: torch.UntypedStorage | None = None) -> torch.Tensor:
    """A contiguous uint8 tensor of ``shape``: on ``storage`` if given, else in a fresh shared-memory segment in a
    loader worker (what ``default_collate`` does there) and in private memory elsewhere."""
    if storage is None and get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    if storage is None:
        storage = torch.UntypedStorage._new_shared(math.prod(int(n) for n in shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)


def stack_images(imgs: Sequence[torch.Tensor], pool: SharedBatchPool | None = None) -> Any:
    """``(3, H, W)`` images -> one ``(B, 3, H, W)`` tensor with channels-last (``(B, H, W, 3)``) memory.

    Channels-last samples are copied as plain memory. In a loader worker the batch is built directly in shared
    memory (a ``pool`` buffer when one is free), so handing it to the main process copies nothing more. The copy
    runs in NumPy, single-threaded: torch.stack would wake intra-op threads that the training step needs.

    Returns:
        The tensor, or with a ``pool`` in a worker, a wrapper that unpickles into it in the main process.
    """
    hwc = [im.permute(1, 2, 0).numpy() for im in imgs]
    shape = (len(hwc), *hwc[0].shape)
    out, ticket = (new_batch_tensor(shape), None) if pool is None else pool.batch_tensor(shape)
    np.stack(hwc, out=out.numpy())
    img = out.permute(0, 3, 1, 2)
    return img if pool is None else pool.wrap(img, ticket)


class SharedBatchPool:
    """Per-worker shared-memory batch buffers, reused after the main process frees them.

    A loader worker hands each batch to the main process in shared memory. A fresh shared segment per batch makes
    the kernel allocate and zero every 4 KiB page on first touch: about 300 page faults for each 640 px image, which
    on a small VM is 0.65 ms, a tenth of the worker's whole time per image. With a pool each worker keeps a few
    segments and writes a new batch into one that the main process no longer uses.

    How a worker knows: every pooled batch travels with a :data:`Ticket`, and the slot's entry in a small shared
    flag table holds its generation while the batch is in use. In the main process the ticket is unpacked together
    with the batch image (:func:`_received`), which puts a finalizer on the image's storage. The storage dies only
    when the last tensor, view or NumPy array on that memory is gone, and then the finalizer clears the flag. A
    worker only writes into a slot whose flag is clear, so a batch the main process still holds, however long and
    through whatever views, is never overwritten. When every slot is busy (or a batch was lost without being
    unpacked), the worker falls back to a fresh segment, which is always correct.

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

    def batch_tensor(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, Ticket | None]:
        """A uint8 tensor of ``shape`` in shared memory and its ticket (None when not pooled).

        In a worker: a free slot's buffer (enlarged if too small) with its flag set, else a fresh segment.
        Outside a worker: plain private memory and no ticket.
        """
        info = get_worker_info()
        if info is None or info.id >= len(self.flags):
            return new_batch_tensor(shape), None
        storage, ticket = self._take(info.id, math.prod(int(n) for n in shape))
        return new_batch_tensor(shape, storage), ticket

    def _take(self, worker: int, nbytes: int) -> tuple[torch.UntypedStorage | None, Ticket | None]:
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

    def wrap(self, img: torch.Tensor, ticket: Ticket | None) -> Any:
        """What the collate function puts in the batch: ``img`` itself, or a wrapper that unpacks into ``img``."""
        return img if ticket is None else _Pooled(self.id, ticket, img)


class _Pooled:
    """A pooled batch image on its way to the main process; unpickles into the plain tensor."""

    def __init__(self, pool_id: str, ticket: Ticket, img: torch.Tensor) -> None:
        self.pool_id, self.ticket, self.img = pool_id, ticket, img

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _received, (self.pool_id, self.ticket, self.img)


def _received(pool_id: str, ticket: Ticket, img: torch.Tensor) -> torch.Tensor:
    """Unpickled in the main process: free the slot once nothing uses the image's memory any more."""
    pool = _POOLS.get(pool_id)
    if pool is not None:
        weakref.finalize(img.untyped_storage(), _release, pool.flags, *ticket).atexit = False  # no use at exit
    return img  # a pool unknown here (the batch reached another process) keeps its slot busy: never unsafe


def _release(flags: torch.Tensor, worker: int, slot: int, generation: int) -> None:
    if int(flags[worker, slot]) == generation:  # only this batch's own ticket frees the slot
        flags[worker, slot] = 0


# ------------------------------------------------------------------------------------------------ label cache


def wait_for_label_cache(ready: Callable[[], bool], cache_file: Path, poll_s: float = 2.0) -> bool:
    """Poll until ``ready()`` says the node's first process wrote a valid label cache; False when it never can.

    Waiting on a file instead of a barrier means no collective is pending while a large dataset is scanned, so
    the process group's timeout (30 minutes by default) cannot expire. When the cache folder is not writable the
    first process cannot write the cache either, and the caller scans for itself.
    """
    folder = cache_file.parent
    while not ready():
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return False
        time.sleep(poll_s)
    return True
