"""Fine-tuning yolov5n.pt to new classes (nc != 80): the head after transfer, the loss gains and the first step's
loss and head gradients equal YOLOv5's.

The reference ``data/finetune_nc7_yolov5n.pt`` was written by ``scripts/reference/finetune_nc7.py`` running
YOLOv5's own ``Model``, ``train.intersect_dicts`` and ``ComputeLoss`` (7 classes, 320 px, ``hyp.scratch-low``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_yolo.module import YOLOModule

REFERENCE = Path(__file__).parent / "data" / "finetune_nc7_yolov5n.pt"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


@pytest.fixture(scope="module")
def module(shared: Path, reference: dict) -> YOLOModule:
    # YOLOv5 builds its model right after seeding; the new head's convs draw their initial weights from that
    # state in the same order here, so the same seed gives the same head.
    torch.manual_seed(0)
    weights = shared / "weights" / "yolov5n.pt"
    return YOLOModule(weights=str(weights), nc=reference["nc"], imgsz=reference["imgsz"], ema=False)


def test_transfer_keeps_everything_but_the_new_head_convs(module: YOLOModule, reference: dict) -> None:
    own = module.model.state_dict()
    assert module.transferred == (len(reference["transferred"]), reference["total"]) == (343, 349)
    not_transferred = sorted(set(own) - set(reference["transferred"]))
    assert not_transferred == [f"model.24.m.{i}.{kind}" for i in range(3) for kind in ("bias", "weight")]


def test_head_after_transfer_equals_yolov5s(module: YOLOModule, reference: dict) -> None:
    own = module.model.state_dict()
    for name, expected in reference["head"].items():
        torch.testing.assert_close(own[name], expected, rtol=0, atol=0, msg=name)


def test_loss_gains_for_seven_classes_at_320(module: YOLOModule, reference: dict) -> None:
    gains = reference["gains"]
    # hyp.scratch-low's box 0.05, cls 0.5 * 7 / 80, obj 1.0 * (320 / 640) ** 2
    assert (module.loss.box_gain, module.loss.cls_gain, module.loss.obj_gain) == pytest.approx(
        (gains["box"], gains["cls"], gains["obj"]), rel=1e-12
    )


def test_first_step_loss_and_head_gradients_equal_yolov5s(module: YOLOModule, reference: dict) -> None:
    module.model.load_state_dict({**module.model.state_dict(), **reference["head"]})
    module.train()
    module.zero_grad()
    loss, items = module.training_loss({"img": reference["img"], "targets": reference["targets"]})
    torch.testing.assert_close(loss.detach(), reference["loss"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(items, reference["loss_items"], rtol=1e-4, atol=1e-6)
    loss.backward()
    params = dict(module.model.named_parameters())
    for name, grad in reference["grads"].items():
        # summation order follows the thread count: elements near zero differ by ~1e-6 between runs
        torch.testing.assert_close(params[name].grad, grad, rtol=1e-3, atol=1e-5, msg=name)
