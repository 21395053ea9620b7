"""YOLOLoss: parity with YOLOv5's ComputeLoss on reference cases, and behaviour on edge inputs."""

from __future__ import annotations

import pytest
import torch

from lightning_yolo.loss import YOLOLoss, level_balance, scale_loss_gains

CASES = ["loss_yolov5n_nc80", "loss_yolov5s_nc3_smooth", "loss_yolov5n_nc1_focal", "loss_yolov5n_nc80_empty"]


def _load(shared, name: str) -> dict:
    return torch.load(shared / "reference" / f"{name}.pt", weights_only=True)


def _loss_from(ref: dict) -> YOLOLoss:
    return YOLOLoss(ref["anchors_grid_units"], ref["stride"], ref["nc"], **ref["hyp"])


@pytest.mark.parametrize("case", CASES)
def test_against_yolov5_loss_and_grads(shared, case):
    ref = _load(shared, case)
    preds = [p.clone().requires_grad_() for p in ref["p"]]
    loss, items = _loss_from(ref)(preds, ref["targets"])
    torch.testing.assert_close(loss.detach(), ref["loss"])
    torch.testing.assert_close(items, ref["loss_items"])
    assert loss.shape == (1,) and items.shape == (3,) and not items.requires_grad
    loss.backward()
    for pred, grad in zip(preds, ref["grads"], strict=True):
        torch.testing.assert_close(pred.grad, grad)


@pytest.mark.parametrize("case", CASES)
def test_against_yolov5_build_targets(shared, case):
    ref = _load(shared, case)
    tcls, tbox, indices, anchors = _loss_from(ref).build_targets(ref["p"], ref["targets"])
    expected = ref["build_targets"]
    torch.testing.assert_close(tcls, expected["tcls"])
    torch.testing.assert_close(tbox, expected["tbox"])
    torch.testing.assert_close([tuple(x) for x in indices], [tuple(x) for x in expected["indices"]])
    torch.testing.assert_close(anchors, expected["anchors"])


def _tiny_case(nc: int) -> tuple[YOLOLoss, list[torch.Tensor]]:
    torch.manual_seed(0)
    anchors = torch.tensor([[[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]]])  # one level, stride 8
    loss = YOLOLoss(anchors, [8.0], nc)
    return loss, [torch.randn(2, 3, 4, 4, 5 + nc, requires_grad=True)]


def test_no_targets_gives_zero_box_and_class_loss_but_positive_objectness():
    loss, preds = _tiny_case(nc=3)
    total, items = loss(preds, torch.zeros(0, 6))
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    total.backward()
    assert preds[0].grad[..., 5:].abs().sum() == 0 and preds[0].grad[..., 4].abs().sum() > 0


def test_single_class_has_no_class_loss():
    loss, preds = _tiny_case(nc=1)
    targets = torch.tensor([[0, 0, 0.4, 0.4, 0.3, 0.3], [1, 0, 0.6, 0.5, 0.2, 0.4]])
    _, items = loss(preds, targets)
    assert items[0] > 0 and items[1] > 0 and items[2] == 0


def test_total_is_weighted_sum_times_batch_size():
    loss, preds = _tiny_case(nc=3)
    targets = torch.tensor([[0, 2, 0.4, 0.4, 0.3, 0.3]])
    total, items = loss(preds, targets)
    torch.testing.assert_close(total, items.sum().view(1) * 2)


def test_build_targets_neighbour_cells_by_hand():
    # one target centred at grid (1.3, 2.7) on a 4x4 grid, size matching anchor 0 only (ratio 1)
    anchors = torch.tensor([[[1.0, 1.0], [10.0, 10.0], [0.1, 0.1]]])
    loss = YOLOLoss(anchors, [8.0], nc=2)
    targets = torch.tensor([[1, 1, 1.3 / 4, 2.7 / 4, 1 / 4, 1 / 4]])
    tcls, tbox, indices, anch = loss.build_targets([torch.zeros(2, 3, 4, 4, 7)], targets)
    # own cell (x1, y2); x frac 0.3 < 0.5 and x > 1 -> left neighbour (x0, y2); y frac 0.7 -> lower (x1, y3)
    b, a, gj, gi = indices[0]
    assert gi.tolist() == [1, 0, 1] and gj.tolist() == [2, 2, 3]
    assert b.tolist() == [1, 1, 1] and a.tolist() == [0, 0, 0] and tcls[0].tolist() == [1, 1, 1]
    torch.testing.assert_close(tbox[0][:, :2], torch.tensor([[0.3, 0.7], [1.3, 0.7], [0.3, -0.3]]))
    torch.testing.assert_close(anch[0], torch.ones(3, 2))


def test_anchors_are_a_buffer_that_moves_and_saves():
    loss, _ = _tiny_case(nc=3)
    assert "anchors" in dict(loss.named_buffers()) and "anchors" in loss.state_dict()
    loss.to(torch.float64)
    assert loss.anchors.dtype == torch.float64


def test_scale_loss_gains():
    box, cls, obj = scale_loss_gains(0.05, 0.5, 1.0, nl=4, nc=3, imgsz=320)
    assert box == pytest.approx(0.05 * 3 / 4)
    assert cls == pytest.approx(0.5 * 3 / 80 * 3 / 4)
    assert obj == pytest.approx(1.0 * 0.25 * 3 / 4)


def test_level_balance():
    assert level_balance(3) == [4.0, 1.0, 0.4]
    assert level_balance(4) == [4.0, 1.0, 0.25, 0.06]
    with pytest.raises(ValueError):
        level_balance(6)
