"""Non-maximum suppression: parity with YOLOv5 and the behaviour of each option."""

from __future__ import annotations

import pytest
import torch

from lightning_yolo.ops.nms import non_max_suppression


def _pred(rows: list[list[float]], nc: int) -> torch.Tensor:
    """One image of eval-format rows ``[x, y, w, h, obj, cls probs...]`` -> ``(1, n, 5 + nc)``."""
    return torch.tensor(rows, dtype=torch.float32).view(1, -1, 5 + nc)


def test_against_yolov5_nms_random(shared):
    ref = torch.load(shared / "reference" / "nms_random.pt", weights_only=True)
    for image, expected in zip(ref["prediction"], ref["output"], strict=True):
        (out,) = non_max_suppression(image[None].clone(), 0.001, 0.6, multi_label=True, max_det=300)
        torch.testing.assert_close(out, expected)


def test_overlapping_same_class_keeps_best_and_converts_to_xyxy():
    pred = _pred([[50, 50, 20, 20, 0.9, 1.0, 0.0], [51, 50, 20, 20, 0.8, 1.0, 0.0]], nc=2)
    (out,) = non_max_suppression(pred)
    torch.testing.assert_close(out, torch.tensor([[40.0, 40.0, 60.0, 60.0, 0.9, 0.0]]))


def test_overlapping_different_classes_both_kept_unless_agnostic():
    pred = _pred([[50, 50, 20, 20, 0.9, 1.0, 0.0], [51, 50, 20, 20, 0.8, 0.0, 1.0]], nc=2)
    assert non_max_suppression(pred)[0].shape[0] == 2
    assert non_max_suppression(pred, agnostic=True)[0].shape[0] == 1


def test_score_is_objectness_times_class_and_thresholded():
    pred = _pred([[50, 50, 20, 20, 0.5, 0.4, 0.6], [150, 50, 20, 20, 0.2, 0.0, 1.0]], nc=2)
    (out,) = non_max_suppression(pred, conf_thres=0.25)
    # row 1 fails the objectness filter (0.2); row 0 keeps its best class with score 0.5 * 0.6
    torch.testing.assert_close(out[:, 4:], torch.tensor([[0.3, 1.0]]))


def test_multi_label_gives_one_detection_per_class_above_threshold():
    pred = _pred([[50, 50, 20, 20, 1.0, 0.6, 0.5, 0.1]], nc=3)
    (out,) = non_max_suppression(pred, conf_thres=0.25, multi_label=True)
    assert sorted(out[:, 5].tolist()) == [0.0, 1.0]


def test_classes_filter_and_max_det():
    rows = [[50 + 30 * i, 50, 20, 20, 0.9 - 0.01 * i, float(i % 2), float(1 - i % 2)] for i in range(10)]
    (out,) = non_max_suppression(_pred(rows, nc=2), classes=[1])
    assert out.shape[0] == 5 and (out[:, 5] == 1).all()
    (out,) = non_max_suppression(_pred(rows, nc=2), max_det=3)
    torch.testing.assert_close(out[:, 4], torch.tensor([0.9, 0.89, 0.88]))


def test_empty_and_batch_shapes():
    pred = torch.zeros(3, 7, 6)
    out = non_max_suppression(pred)
    assert len(out) == 3 and all(o.shape == (0, 6) for o in out)


def test_rejects_thresholds_outside_unit_interval():
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(torch.zeros(1, 1, 6), conf_thres=1.5)
