"""Box conversions, clipping, rescaling and IoU, checked against hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_yolo.ops.boxes import (
    clip_boxes,
    scale_boxes,
    xywh_to_xyxy,
    xywhn_to_xyxy,
    xyxy_to_xywh,
    xyxy_to_xywhn,
)
from lightning_yolo.ops.iou import bbox_iou, box_iou

XYXY = [[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 4.0, 2.0]]
XYWH = [[20.0, 40.0, 20.0, 40.0], [2.0, 1.0, 4.0, 2.0]]


@pytest.mark.parametrize("kind", [torch.tensor, np.array])
def test_xyxy_xywh_roundtrip_torch_and_numpy(kind):
    xyxy, xywh = kind(XYXY), kind(XYWH)
    out = xyxy_to_xywh(xyxy)
    assert type(out) is type(xyxy)
    np.testing.assert_allclose(np.asarray(out), XYWH)
    np.testing.assert_allclose(np.asarray(xywh_to_xyxy(xywh)), XYXY)
    np.testing.assert_allclose(np.asarray(xyxy), XYXY)  # input untouched


def test_extra_columns_and_single_box_pass_through():
    rows = torch.tensor([[20.0, 40.0, 20.0, 40.0, 0.7, 3.0]])
    torch.testing.assert_close(xywh_to_xyxy(rows), torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.7, 3.0]]))
    torch.testing.assert_close(xywh_to_xyxy(torch.tensor(XYWH[0])), torch.tensor(XYXY[0]))


@pytest.mark.parametrize("kind", [torch.tensor, np.array])
def test_normalised_conversions_with_padding(kind):
    xywhn = kind([[0.5, 0.25, 0.5, 0.5]])
    out = xywhn_to_xyxy(xywhn, w=200, h=100, padw=3, padh=7)
    np.testing.assert_allclose(np.asarray(out), [[53.0, 7.0, 153.0, 57.0]])
    back = xyxy_to_xywhn(kind([[50.0, 0.0, 150.0, 50.0]]), w=200, h=100)
    np.testing.assert_allclose(np.asarray(back), [[0.5, 0.25, 0.5, 0.5]])


def test_xyxy_to_xywhn_clip_keeps_eps_margin_and_leaves_input():
    boxes = np.array([[-10.0, -5.0, 250.0, 120.0]])
    out = xyxy_to_xywhn(boxes, w=200, h=100, clip=True, eps=1e-3)
    np.testing.assert_allclose(out, [[(200 - 1e-3) / 2 / 200, (100 - 1e-3) / 2 / 100, (200 - 1e-3) / 200, 0.99999]])
    assert boxes[0, 0] == -10.0


@pytest.mark.parametrize("kind", [torch.tensor, np.array])
def test_clip_boxes_in_place(kind):
    boxes = kind([[-5.0, -5.0, 120.0, 80.0]])
    out = clip_boxes(boxes, (50, 100))
    np.testing.assert_allclose(np.asarray(boxes), [[0.0, 0.0, 100.0, 50.0]])
    assert out is boxes


def test_scale_boxes_inverts_a_centred_letterbox():
    # 200x100 (w x h) image letterboxed to 320x320: gain 1.6, vertical half padding (320 - 160) / 2 = 80
    original = torch.tensor([[20.0, 10.0, 120.0, 90.0]])
    letterboxed = original * 1.6 + torch.tensor([0.0, 80.0, 0.0, 80.0])
    out = scale_boxes((320, 320), letterboxed.clone(), (100, 200))
    torch.testing.assert_close(out, original)
    explicit = scale_boxes((320, 320), letterboxed.clone(), (100, 200), ratio_pad=((1.6, 1.6), (0.0, 80.0)))
    torch.testing.assert_close(explicit, original)


def test_scale_boxes_numpy_in_place():
    boxes = np.array([[0.0, 80.0, 160.0, 240.0]])
    out = scale_boxes((320, 320), boxes, (100, 200), ratio_pad=((1.6, 1.6), (0.0, 80.0)))
    assert out is boxes
    np.testing.assert_allclose(boxes, [[0.0, 0.0, 100.0, 100.0]])


def test_scale_boxes_clips_to_original():
    out = scale_boxes((64, 64), torch.tensor([[-8.0, 0.0, 80.0, 64.0]]), (32, 32))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 32.0, 32.0]]))


def test_box_iou_pairwise():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_bbox_iou_variants_against_hand_values():
    # two unit-height boxes: [0,0,2,1] and [1,0,4,1]; overlap 1, union 4, enclosing box 4x1
    a, b = torch.tensor([[0.0, 0.0, 2.0, 1.0]]), torch.tensor([[1.0, 0.0, 4.0, 1.0]])
    iou = 1 / 4
    rho2, c2 = 1.5**2, 4**2 + 1**2
    v = 4 / math.pi**2 * (math.atan(3) - math.atan(2)) ** 2
    ciou = iou - (rho2 / c2 + v * v / (v - iou + 1))
    kw = dict(xywh=False, eps=0.0)
    torch.testing.assert_close(bbox_iou(a, b, **kw), torch.tensor([[iou]]))
    torch.testing.assert_close(bbox_iou(a, b, giou=True, **kw), torch.tensor([[iou]]))  # enclosing box == union
    torch.testing.assert_close(bbox_iou(a, b, diou=True, **kw), torch.tensor([[iou - rho2 / c2]]))
    torch.testing.assert_close(bbox_iou(a, b, ciou=True, **kw), torch.tensor([[ciou]]))
    torch.testing.assert_close(bbox_iou(xyxy_to_xywh(a), xyxy_to_xywh(b), ciou=True, eps=0.0), torch.tensor([[ciou]]))


def test_bbox_iou_giou_of_disjoint_boxes_is_negative():
    a, b = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0])
    torch.testing.assert_close(bbox_iou(a, b, xywh=False, giou=True, eps=0.0), torch.tensor([0.0 - (3 - 2) / 3]))


def test_bbox_iou_ciou_gradient_is_finite():
    a = torch.tensor([[0.5, 0.5, 1.0, 2.0]], requires_grad=True)
    b = torch.tensor([[0.6, 0.4, 1.5, 1.0]])
    bbox_iou(a, b, ciou=True).sum().backward()
    assert torch.isfinite(a.grad).all()
