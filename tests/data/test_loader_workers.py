"""Loader workers' systems code: reused shared-memory batches (never overwritten while the main process holds them,
reused once freed), the pool's size rule, CPU caps, kept malloc buffers and the label-cache wait."""

from __future__ import annotations

import functools
import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_yolo.data import workers
from lightning_yolo.data.dataset import collate
from lightning_yolo.data.workers import SharedBatchPool, _release

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


def test_a_pool_is_used_only_with_workers_and_while_it_takes_a_quarter_of_shared_memory(monkeypatch) -> None:
    monkeypatch.setattr(workers, "shared_memory_free", lambda: 4 * 2 * 3 * 1000)
    pool = workers.batch_pool(2, 3, batch_bytes=1000)  # 2 workers x 3 slots x 1000 bytes: exactly a quarter
    assert isinstance(pool, SharedBatchPool) and pool.flags.shape == (2, 3)
    assert workers.batch_pool(2, 3, batch_bytes=1001) is None
    assert workers.batch_pool(0, 3, batch_bytes=1) is None  # the main process loads: nothing to hand over


def test_workers_are_capped_at_a_device_share_of_the_cpus(monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [workers.cap_workers(n) for n in (0, 3, 8, 16)] == [0, 3, 8, 8]
    assert workers.cap_workers(16, devices_per_node=3) == 2  # 8 CPUs shared by 3 devices
    assert workers.cap_workers(16, devices_per_node=16) == 1  # at least one CPU each
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: assume one
    assert workers.cap_workers(4) == 1


def test_only_cpu_training_lowers_the_workers_priority() -> None:
    assert workers.worker_niceness(cpu_training=True) == 19 and workers.worker_niceness(cpu_training=False) == 0


def test_waiting_for_the_label_cache_polls_until_it_is_ready(tmp_path: Path) -> None:
    answers = [False, False, True]

    def ready() -> bool:
        return answers.pop(0)

    assert workers.wait_for_label_cache(ready, tmp_path / "cache" / "labels.json", poll_s=0)
    assert answers == []  # asked until the cache was ready, and not again


def test_waiting_gives_up_when_the_cache_folder_cannot_be_written(tmp_path: Path, monkeypatch) -> None:
    checked = []
    monkeypatch.setattr(os, "access", lambda path, mode: checked.append(Path(path)) or False)
    assert not workers.wait_for_label_cache(lambda: False, tmp_path / "missing" / "labels.json", poll_s=0)
    assert checked == [tmp_path]  # the nearest folder that exists decides


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from lightning_yolo.data.workers import keep_freed_image_buffers
if sys.argv[1] == "keep":
    assert keep_freed_image_buffers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(40):  # per sample: 4 decoded images, a mosaic canvas and the warped image, written then freed
    images = [np.ones((480 + i % 3, 640, 3), np.uint8) for _ in range(4)]
    canvas = np.full((1280, 1280, 3), 114, np.uint8)
    warped = np.ones((640, 640, 3), np.uint8)
    del images, canvas, warped
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux (glibc) only")
def test_workers_reuse_freed_image_buffers_instead_of_faulting_them_in_again() -> None:
    import subprocess
    import sys

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(run.stdout.split()[-1])

    default, kept = faults("default"), faults("keep")
    assert kept * 4 < default, (kept, default)  # fresh pages for every sample by default, reused when kept
