"""Reused shared-memory batches: never overwritten while the main process holds them, reused once freed."""

from __future__ import annotations

import functools
import gc

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_yolo.data.dataset import collate
from lightning_yolo.data.shared_batches import SharedBatchPool, _release

HW = (8, 12)


class KeyImages(Dataset):
    """Sample ``k`` is an image filled with ``k % 251``, in the dataset's sample format."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, key: int):
        img = torch.full((*HW, 3), key % 251, dtype=torch.uint8).permute(2, 0, 1)  # channels-last view
        return img, torch.zeros((1, 6)), f"{key}.jpg", None


def expected(batch: dict) -> torch.Tensor:
    keys = [int(p.split(".")[0]) for p in batch["paths"]]
    return torch.tensor(keys, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, *HW) % 251


def test_held_batches_are_never_overwritten_and_freed_buffers_are_reused() -> None:
    pool = SharedBatchPool(workers=2, slots=3)
    loader = DataLoader(
        KeyImages(),
        batch_size=4,
        num_workers=2,
        persistent_workers=True,
        prefetch_factor=2,
        collate_fn=functools.partial(collate, pool=pool),
    )
    held, views = [], []
    for epoch in range(4):
        for i, batch in enumerate(loader):
            assert torch.equal(batch["img"], expected(batch)), (epoch, i)
            if i % 3 == 0:
                held.append(batch)  # the whole batch stays referenced
            elif i % 5 == 1:
                views.append((batch["img"][1:3].numpy(), expected(batch)[1:3].numpy()))  # only a NumPy view stays
    for batch in held:  # whatever the workers did meanwhile, held memory still has its own batch
        assert torch.equal(batch["img"], expected(batch))
    for view, want in views:
        np.testing.assert_array_equal(view, want)
    reused, fresh = pool.counts.sum(0).tolist()
    assert reused > 0 and fresh > 0  # freed buffers were reused; held ones forced fresh segments
    assert (pool.flags != 0).any()
    del held, views, batch, view, want
    gc.collect()
    assert (pool.flags == 0).all()  # every batch that reached this process freed its slot when dropped


def test_release_only_frees_the_generation_it_was_given() -> None:
    flags = torch.tensor([[5, 7]])
    _release(flags, 0, 0, 4)  # a stale ticket of an older batch in the same slot
    _release(flags, 0, 1, 7)
    assert flags.tolist() == [[5, 0]]


def test_without_workers_a_pool_changes_nothing() -> None:
    pool = SharedBatchPool(workers=2, slots=2)
    samples = [KeyImages()[k] for k in range(3)]
    batch = collate(samples, pool=pool)
    assert isinstance(batch["img"], torch.Tensor) and torch.equal(batch["img"], collate(samples)["img"])
    assert (pool.counts == 0).all() and (pool.flags == 0).all()
