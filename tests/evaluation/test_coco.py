"""COCO JSON in YOLOv5's conventions, ground truth from labels or annotation files, the COCO evaluators, label
files, hybrid label rows and the speed line."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_yolo.evaluation import coco
from lightning_yolo.evaluation.coco import (
    COCO91_IDS,
    INSTALL_HINT,
    coco_image_id,
    detections_to_coco,
    evaluate_coco,
    labels_to_coco,
    resolve_ground_truth,
)
from lightning_yolo.evaluation.hybrid import append_label_rows
from lightning_yolo.evaluation.label_files import detections_to_label_lines, write_label_file
from lightning_yolo.evaluation.speed import StageTimes
from lightning_yolo.ops.nms import non_max_suppression

FILES = ["/data/images/000000000009.jpg", "/data/images/bus.jpg"]
SHAPES_WH = np.array([[640, 480], [810, 1080]])
LABELS = [
    np.array([[0, 0.5, 0.5, 0.25, 0.5], [2, 0.25, 0.25, 0.1, 0.1]], dtype=np.float32),
    np.array([[1, 0.5, 0.4, 0.5, 0.2]], dtype=np.float32),
]
NAMES = ["person", "bicycle", "car"]


def _ground_truth() -> dict:
    return labels_to_coco(FILES, [coco_image_id(f) for f in FILES], SHAPES_WH, LABELS, NAMES)


def _perfect_predictions(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]


def test_coco91_ids_are_yolov5s_coco80_to_coco91_class() -> None:
    assert len(COCO91_IDS) == 80 and len(set(COCO91_IDS)) == 80
    assert COCO91_IDS[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)  # 12 (street sign) is not a COCO class
    assert COCO91_IDS[-5:] == (86, 87, 88, 89, 90)
    assert not {12, 26, 29, 30, 45, 66, 68, 69, 71, 83} & set(COCO91_IDS)


def test_image_id_is_the_numeric_stem_as_int_else_the_stem() -> None:
    assert coco_image_id("/coco/images/val2017/000000000139.jpg") == 139
    assert coco_image_id("zidane.jpg") == "zidane"
    assert coco_image_id("img_01.png") == "img_01"


def test_detections_follow_save_one_json() -> None:
    det = torch.tensor([[10.12345, 20.0, 110.5, 70.25, 0.876543219, 2.0], [0.0, 0.0, 5.0, 5.0, 0.1, 0.0]])
    records = detections_to_coco(det, 42, category_ids=[7, 8, 9])
    assert records[0] == {"image_id": 42, "category_id": 9, "bbox": [10.123, 20.0, 100.377, 50.25], "score": 0.87654}
    assert records[1]["category_id"] == 7 and records[1]["bbox"] == [0.0, 0.0, 5.0, 5.0]
    json.dumps(records)  # plain Python numbers only
    assert detections_to_coco(torch.zeros(0, 6), "bus", [0]) == []


def test_labels_become_pixel_xywh_ground_truth() -> None:
    gt = _ground_truth()
    assert gt["images"][0] == {"id": 9, "file_name": "000000000009.jpg", "width": 640, "height": 480}
    assert gt["images"][1]["id"] == "bus"
    first = gt["annotations"][0]
    assert first["bbox"] == [240.0, 120.0, 160.0, 240.0]  # centre (320, 240), 160 x 240 pixels
    assert first["area"] == 160.0 * 240.0 and first["iscrowd"] == 0 and first["category_id"] == 0
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]
    assert gt["categories"] == [{"id": i, "name": n} for i, n in enumerate(NAMES)]


def test_perfect_predictions_score_one_and_inputs_stay_untouched() -> None:
    gt = _ground_truth()
    predictions = _perfect_predictions(gt)
    before = copy.deepcopy((gt, predictions))
    result = evaluate_coco(gt, predictions, [9, "bus"])  # a string image id works too
    assert result.map == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in result.summary
    assert (gt, predictions) == before


def test_shifted_boxes_lose_the_strict_thresholds_only() -> None:
    gt = _ground_truth()
    predictions = _perfect_predictions(gt)
    for p in predictions:  # IoU of a box shifted by 15% of its width: about 0.74
        p["bbox"] = [p["bbox"][0] + 0.15 * p["bbox"][2], *p["bbox"][1:]]
    result = evaluate_coco(gt, predictions, [9, "bus"])
    assert result.map50 == pytest.approx(1.0)
    assert 0.3 < result.map < 0.8


def test_only_the_listed_images_are_evaluated() -> None:
    gt = _ground_truth()
    predictions = [p for p in _perfect_predictions(gt) if p["image_id"] == 9]
    assert evaluate_coco(gt, predictions, [9]).map == pytest.approx(1.0)
    assert evaluate_coco(gt, predictions, [9, "bus"]).map < 1.0  # the bus's label is missed


def test_no_detections_is_map_zero() -> None:
    result = evaluate_coco(_ground_truth(), [], [9, "bus"])
    assert (result.map, result.map50) == (0.0, 0.0)


def test_the_evaluators_agree() -> None:
    pytest.importorskip("pycocotools")
    gt = _ground_truth()
    predictions = _perfect_predictions(gt)
    predictions[0]["bbox"] = [245.0, 120.0, 160.0, 230.0]
    predictions.append({"image_id": "bus", "category_id": 0, "bbox": [1.0, 1.0, 50.0, 50.0], "score": 0.95})
    results = [evaluate_coco(gt, predictions, [9, "bus"], backend) for backend in coco.BACKENDS]
    assert results[0].map == pytest.approx(results[1].map) and results[0].map50 == pytest.approx(results[1].map50)


def test_without_an_evaluator_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco.importlib.util, "find_spec", lambda name: None)
    assert coco.coco_backend() is None
    with pytest.raises(ImportError, match=r"pip install -e '\.\[coco\]'"):
        evaluate_coco(_ground_truth(), [], [9])
    assert "COCO evaluation needs" in INSTALL_HINT


# ------------------------------------------------------------------------------------------------ ground truth
def _annotation_file(tmp_path: Path, names: list[str], ids: list[int], file_names: list[str]) -> Path:
    images = [{"id": i, "file_name": f, "width": 640, "height": 480} for i, f in zip(ids, file_names, strict=True)]
    categories = [{"id": c, "name": n} for c, n in zip((5, 17, 3), names, strict=True)]
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": categories}))
    return path


def test_an_annotation_file_is_matched_by_file_name_and_class_name(tmp_path: Path) -> None:
    path = _annotation_file(tmp_path, ["car", "person", "bicycle"], [1001, 1002], ["000000000009.jpg", "bus.jpg"])
    gt = resolve_ground_truth(FILES, SHAPES_WH, LABELS, NAMES, path)
    assert gt.source == path and not gt.is_converted
    assert gt.image_ids == [1001, 1002]
    assert gt.category_ids == [17, 3, 5]  # person, bicycle, car as the file numbers them


def test_an_annotation_file_without_the_images_falls_back_to_the_labels(tmp_path: Path, caplog) -> None:
    path = _annotation_file(tmp_path, NAMES, [9, 10], ["000000000009.jpg", "other.jpg"])
    with caplog.at_level(logging.WARNING, logger="lightning_yolo"):
        gt = resolve_ground_truth(FILES, SHAPES_WH, LABELS, NAMES, path)
    assert gt.is_converted and gt.image_ids == [9, "bus"] and gt.category_ids == [0, 1, 2]
    assert "1 of the 2 images are not in it" in caplog.text


def test_coco_categories_under_other_names_get_the_80_to_91_ids() -> None:
    categories = [{"id": i, "name": f"coco{i}"} for i in COCO91_IDS]
    assert coco.category_ids_for([f"class{i}" for i in range(80)], categories) == list(COCO91_IDS)
    assert coco.category_ids_for(["a", "b"], [{"id": 0, "name": "x"}, {"id": 1, "name": "y"}]) == [0, 1]
    assert coco.category_ids_for(["a", "b"], [{"id": 5, "name": "x"}]) is None


def test_repeated_file_stems_get_image_numbers() -> None:
    files = ["/a/images/x.jpg", "/b/images/x.jpg"]
    gt = resolve_ground_truth(files, SHAPES_WH, LABELS, NAMES, None)
    assert gt.image_ids == [1, 2] and [img["id"] for img in gt.data["images"]] == [1, 2]


def test_find_annotations_uses_cocos_layout(tmp_path: Path) -> None:
    expected = tmp_path / "annotations" / "instances_val2017.json"
    expected.parent.mkdir()
    expected.write_text("{}")
    assert coco.find_annotations(tmp_path, [tmp_path / "val2017.txt"]) == expected
    assert coco.find_annotations(tmp_path, [tmp_path / "images" / "val2017"]) is not None
    assert coco.find_annotations(tmp_path, [tmp_path / "images" / "train2017"]) is None


# ------------------------------------------------------------------------------------------------ label files
def test_label_lines_are_normalised_xywh_with_optional_confidence(tmp_path: Path) -> None:
    det = torch.tensor([[100.0, 50.0, 300.0, 150.0, 0.75, 3.0]])
    assert detections_to_label_lines(det, (200, 400), save_conf=False) == ["3 0.5 0.5 0.5 0.5"]
    assert detections_to_label_lines(det, (200, 400), save_conf=True) == ["3 0.5 0.5 0.5 0.5 0.75"]
    path = write_label_file(tmp_path / "a.txt", det, (200, 400), save_conf=False)
    write_label_file(path, det, (200, 400), save_conf=False)  # rewritten, not appended
    assert path.read_text() == "3 0.5 0.5 0.5 0.5\n"


# ------------------------------------------------------------------------------------------------ hybrid
def test_label_rows_join_the_predictions_and_survive_nms() -> None:
    nc = 3
    prediction = torch.zeros(2, 4, 5 + nc)
    prediction[0, 0] = torch.tensor([50.0, 50.0, 20.0, 20.0, 0.9, 1.0, 0.0, 0.0])  # a detection of class 0
    targets = torch.tensor([[0, 2, 0.5, 0.25, 0.1, 0.1], [0, 1, 0.25, 0.5, 0.2, 0.2], [1, 0, 0.5, 0.5, 0.5, 0.5]])
    rows = append_label_rows(prediction, targets, (100, 200))
    assert rows.shape == (2, 4 + 2, 5 + nc)  # the most labels of an image: 2; image 1 gets one zero row
    assert rows[0, 4].tolist() == [100.0, 25.0, 20.0, 10.0, 1.0, 0.0, 0.0, 1.0]  # pixels, objectness 1, one-hot
    assert rows[1, 5].abs().sum() == 0
    out = non_max_suppression(rows, conf_thres=0.001, iou_thres=0.6, multi_label=True)
    assert len(out[0]) == 3 and len(out[1]) == 1
    assert (out[0][:2, 4] == 1).all() and sorted(out[0][:2, 5].tolist()) == [1.0, 2.0]  # labels first, score 1
    assert out[1][0].tolist() == [50.0, 25.0, 150.0, 75.0, 1.0, 0.0]


def test_no_labels_add_no_rows() -> None:
    prediction = torch.rand(2, 4, 7)
    assert torch.equal(append_label_rows(prediction, torch.zeros(0, 6), (64, 64)), prediction)


# ------------------------------------------------------------------------------------------------ speed
def test_speed_line_reports_milliseconds_per_image() -> None:
    times = StageTimes()
    times.count((4, 3, 320, 256))
    times.count((2, 3, 256, 320))
    times.seconds = {"pre-process": 0.006, "inference": 0.6, "NMS": 0.03}
    assert times.per_image_ms() == pytest.approx((1.0, 100.0, 5.0))
    assert times.line() == "Speed: 1.0ms pre-process, 100.0ms inference, 5.0ms NMS per image at shape (4, 3, 320, 320)"
    assert times.line(640).endswith("at shape (4, 3, 640, 640)")
    with times.stage("NMS", torch.device("cpu")):
        pass
    assert times.seconds["NMS"] >= 0.03
    times.reset()
    assert times.images == 0 and times.per_image_ms() == (0.0, 0.0, 0.0)
