"""The official yolov5n.pt, imported and rebuilt by lightning_yolo, reproduces upstream YOLOv5's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from lightning_yolo.data.transforms import letterbox
from lightning_yolo.models.weights import build_model_from_weights
from lightning_yolo.ops.boxes import scale_boxes
from lightning_yolo.ops.nms import non_max_suppression

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def yolov5n(shared: Path) -> torch.nn.Module:
    """yolov5n.pt as a float32 DetectionModel in eval mode (unfused, like the reference run)."""
    return build_model_from_weights(shared / "weights" / "yolov5n.pt").float().eval()


@pytest.fixture(scope="module")
def bus320(shared: Path) -> dict:
    return torch.load(shared / "reference" / "forward_yolov5n_bus320.pt", map_location="cpu", weights_only=True)


def test_against_yolov5_eval_output_at_320(yolov5n: torch.nn.Module, bus320: dict) -> None:
    with torch.no_grad():
        output = yolov5n(bus320["input"].float())
    torch.testing.assert_close(output, bus320["output"], **TOL)


def test_against_yolov5_raw_level_outputs_at_320(yolov5n: torch.nn.Module, bus320: dict) -> None:
    with torch.no_grad():
        raw = yolov5n.forward_raw(bus320["input"].float())
    assert len(raw) == len(bus320["train_outputs"]) == 3
    for level, (ours, theirs) in enumerate(zip(raw, bus320["train_outputs"], strict=True)):
        torch.testing.assert_close(ours, theirs, **TOL, msg=lambda m, level=level: f"level {level}: {m}")


def _detect(model: torch.nn.Module, image_bgr: np.ndarray, imgsz: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """detect.py's pipeline: letterbox (auto), BGR->RGB, /255, eval forward, NMS, boxes back to the image."""
    img, _, _ = letterbox(image_bgr, imgsz, auto=True, stride=32)
    x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))).float()[None] / 255  # (1,3,h,w)
    with torch.no_grad():
        det = non_max_suppression(model(x), conf_thres=0.25, iou_thres=0.45)[0]
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], image_bgr.shape[:2]).round()
    return det, tuple(x.shape[2:])


def test_against_yolov5_detections_on_bus_at_640(yolov5n: torch.nn.Module, shared: Path) -> None:
    reference = json.loads((shared / "reference" / "detect_yolov5n_bus640.json").read_text())
    expected = torch.tensor(reference["detections_xyxy_conf_cls"])
    image = cv2.imread(str(shared / "images" / "bus.jpg"))
    det, shape = _detect(yolov5n, image, 640)
    assert list(shape) == reference["letterbox_shape"]
    assert det.shape[0] == expected.shape[0] == 5
    order = det[:, 4].argsort(descending=True)
    det = det[order]
    assert det[:, 5].tolist() == expected[:, 5].tolist()
    assert [yolov5n.names[int(c)] for c in det[:, 5]] == reference["names"]
    torch.testing.assert_close(det[:, 4], expected[:, 4], atol=1e-3, rtol=0)  # upstream ran the fused model
    iou = box_iou(det[:, :4], expected[:, :4]).diagonal()
    assert (iou > 0.99).all(), iou
