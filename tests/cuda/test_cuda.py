"""What only a CUDA device can show: mixed-precision steps (float16 with its GradScaler, bfloat16), channels-last
under autocast, pinned transfers of the loader's shared-memory batches, and a 1-GPU DDP fit.

Every test is marked ``cuda`` and skips on a machine without a CUDA device; ``scripts/gpu_check.sh`` runs them
with ``pytest -m cuda``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fit_helpers import fit_args

from lightning_yolo.data.datamodule import YOLODataModule
from lightning_yolo.module import YOLOModule

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# Autocast rounds activations to 8 (bfloat16) or 11 (float16) significant bits; YOLOv5's loss is a sum of
# means over thousands of anchors, so its relative error stays well under these bounds while a wrong cast
# (a loss term computed in half precision, a scaler applied twice) is off by far more.
LOSS_RTOL = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
# Cosine similarity of all parameter gradients to fp32's on one batch of a freshly initialised yolov5n. With CPU
# autocast the same check gives 0.998 (float16, loss scaled by 1024) and 0.77 (bfloat16: 8 significant bits through
# 25 layers); a gradient of the wrong loss term or an unscaled float16 underflow falls far below.
GRAD_COSINE = {torch.float16: 0.99, torch.bfloat16: 0.5}
LOSS_SCALE = 1024.0  # what a GradScaler does for float16: keep small gradients above float16's smallest normal


def _module(channels_last: bool = True) -> YOLOModule:
    torch.manual_seed(0)
    module = YOLOModule(cfg="yolov5n.yaml", nc=3, imgsz=64, ema=False, channels_last=channels_last)
    return module.cuda().train()


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (4, 3, 64, 64), generator=generator, dtype=torch.uint8)
    targets = torch.tensor(
        [[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2], [2, 0, 0.7, 0.3, 0.4, 0.5], [3, 1, 0.2, 0.2, 0.1, 0.1]]
    )
    return {"img": img.cuda(), "targets": targets.cuda()}


def _skip_without_bf16(dtype: torch.dtype) -> None:
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_mixed_precision_loss_and_gradients_follow_fp32(dtype: torch.dtype) -> None:
    _skip_without_bf16(dtype)
    module, batch = _module(), _batch()
    reference, ref_items = module.training_loss(batch)
    reference.backward()
    ref_grad = _gradients(module)
    module.zero_grad()
    with torch.autocast("cuda", dtype=dtype):
        loss, items = module.training_loss(batch)
    assert loss.dtype == torch.float32  # the loss itself is never reduced in half precision
    torch.testing.assert_close(loss, reference, rtol=LOSS_RTOL[dtype], atol=1e-4)
    torch.testing.assert_close(items, ref_items, rtol=LOSS_RTOL[dtype], atol=1e-4)
    (loss * LOSS_SCALE).backward()
    grad = _gradients(module) / LOSS_SCALE
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    assert torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0) > GRAD_COSINE[dtype]


def _gradients(module: YOLOModule) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_channels_last_under_autocast_matches_the_default_layout(dtype: torch.dtype) -> None:
    _skip_without_bf16(dtype)
    nhwc, nchw = _module(True), _module(False)
    nchw.load_state_dict(nhwc.state_dict())
    batch = _batch()
    with torch.autocast("cuda", dtype=dtype):
        x = nhwc._preprocess(batch["img"])
        assert x.is_contiguous(memory_format=torch.channels_last)
        losses = [m.training_loss(batch)[0] for m in (nhwc, nchw)]
    torch.testing.assert_close(losses[0], losses[1], rtol=LOSS_RTOL[dtype], atol=1e-4)


def test_shared_memory_batches_are_pinned_and_arrive_intact(tiny_dataset: Path) -> None:
    dm = YOLODataModule(data=str(tiny_dataset), imgsz=64, batch_size=4, workers=2)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        img = batch["img"]
        assert img.is_pinned(), "the loader must pin batches when a CUDA device is present"
        on_gpu = img.to("cuda", non_blocking=True)
        targets = batch["targets"].to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        assert torch.equal(on_gpu.cpu(), img) and torch.equal(targets.cpu(), batch["targets"])


def _fit(tiny_dataset: Path, project: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    args = fit_args(tiny_dataset, project, epochs, "--trainer.accelerator=gpu", "--trainer.devices=1", *extra)
    env = {**os.environ, "LIGHTNING_YOLO_CACHE": str(project / "cache"), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_yolo", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_grad_scaler_state_is_saved_and_resumed(tiny_dataset: Path, tmp_path: Path) -> None:
    first = _fit(tiny_dataset, tmp_path, 1, "--trainer.precision=16-mixed")
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "tiny" / "weights" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    scaler = checkpoint["MixedPrecision"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    # A scale no fresh GradScaler starts from (65536): after the resume it can only have stayed or halved.
    scaler["scale"] = 1234.0
    torch.save(checkpoint, last)
    resumed = _fit(tiny_dataset, tmp_path, 2, "--trainer.precision=16-mixed", "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["epoch"] == checkpoint["epoch"] + 1
    assert 0 < after["MixedPrecision"]["scale"] <= 1234.0


def test_one_gpu_ddp_fit_with_bf16(tiny_dataset: Path, tmp_path: Path) -> None:
    precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    result = _fit(tiny_dataset, tmp_path, 2, "--trainer.strategy=ddp", f"--trainer.precision={precision}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "tiny"
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs
    assert (run / "weights" / "last.ckpt").is_file() and (run / "weights" / "best.ckpt").is_file()
