"""YOLOv5 val.py's options on the command line: --val.save_json (COCO JSON + COCO evaluation), --val.save_txt,
--val.save_conf, --val.save_hybrid, --val.coco_annotations, --model.augment (TTA) and the speed line."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from fit_helpers import coco128_subset, fit_args

from lightning_yolo import cli
from lightning_yolo.callbacks.val_outputs import COCO_METRICS
from lightning_yolo.evaluation.coco import COCO91_IDS, INSTALL_HINT, converted_ground_truth
from lightning_yolo.evaluation.speed import STAGES
from lightning_yolo.module import YOLOModule
from lightning_yolo.settings import load_yaml

COMMON = ["--data.workers=0", "--trainer.enable_progress_bar=false", "--noplots=true"]
IMAGES = 16
SPEED = re.compile(r"^Speed: \d+\.\dms pre-process, \d+\.\dms inference, \d+\.\dms NMS per image at shape \((.*)\)$")


def _subset(shared: Path, root: Path, images: int = IMAGES) -> Path:
    """The first coco128 images and labels linked into a new dataset (split source ``images``); its data yaml."""
    return coco128_subset(shared / "data" / "coco128", root, images)


@pytest.fixture
def subset(shared: Path, tmp_path: Path) -> Path:
    return _subset(shared, tmp_path / "subset")


def _run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Any:
    """Run the command line; returns its trainer (for the logged metrics and the module)."""
    states = []

    class Recording(cli.RunState):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            states.append(self)

    monkeypatch.setattr(cli, "RunState", Recording)
    cli.main(args)
    return states[0].trainer


def _validate(monkeypatch, shared: Path, data: Path, project: Path, *extra: str, command: str = "validate") -> Any:
    weights = shared / "weights" / "yolov5n.pt"
    args = [command, f"--model.weights={weights}", f"--data.data={data}", "--data.imgsz=160", f"--project={project}"]
    return _run(monkeypatch, [*args, *COMMON, *extra])


def _metric(trainer: Any, name: str) -> float:
    return float(trainer.callback_metrics[name])


def _label_rows(data: Path) -> dict[str, np.ndarray]:
    """Label rows ``(k, 5)`` of each image stem of a dataset."""
    folder = data.parent / "labels"
    return {p.stem: np.loadtxt(p, ndmin=2) for p in sorted(folder.glob("*.txt"))}


# ------------------------------------------------------------------------------------------------ the module
def _batch() -> dict[str, Any]:
    """Two 64 x 64 letterboxed images of 128 x 128 originals, one label in the first."""
    torch.manual_seed(0)
    return {
        "img": torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8),
        "targets": torch.tensor([[0.0, 1.0, 0.5, 0.5, 0.25, 0.5]]),
        "paths": ["a.jpg", "b.jpg"],
        "shapes": [((128, 128), ((0.5, 0.5), (0.0, 0.0)))] * 2,
    }


def test_the_evaluation_step_returns_original_pixels_and_honours_hybrid_and_augment() -> None:
    module = YOLOModule(cfg="yolov5n.yaml", nc=3, ema=False, conf_thres=0.001).eval()
    with torch.no_grad():
        plain = module.validation_step(_batch(), 0)
        assert module.speed.images == 2 and all(module.speed.seconds[s] > 0 for s in STAGES)
        for det, pred in zip(plain["detections"], plain["predictions"], strict=True):
            assert torch.allclose(pred[:, :4], (det[:, :4] * 2).clamp(0, 128)) and torch.equal(pred[:, 4:], det[:, 4:])
        module.hybrid_labels = True
        hybrid = module.validation_step(_batch(), 0)["predictions"][0]
        assert hybrid[0].tolist() == [48.0, 32.0, 80.0, 96.0, 1.0, 1.0]  # the label, first, in original pixels
        module.hybrid_labels = False
        module.hparams.augment = True
        augmented = module.validation_step(_batch(), 0)["detections"]
    assert any(a.shape != p.shape or not torch.equal(a, p) for a, p in zip(augmented, plain["detections"], strict=True))


# ------------------------------------------------------------------------------------------------ save_json
def test_save_json_writes_yolov5s_coco_json_and_evaluates_it(
    shared, subset, tmp_path, label_cache, capsys, monkeypatch
):
    trainer = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_json=true")
    run = tmp_path / "exp"
    records = json.loads((run / "yolov5n_predictions.json").read_text())  # YOLOv5: {weights stem}_predictions.json
    stems = {int(p.stem) for p in (subset.parent / "images").glob("*.jpg")}
    assert records and all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in records)
    assert {r["image_id"] for r in records} <= stems  # numeric stems as ints
    assert all(0 <= r["category_id"] < 80 for r in records)  # class indices against converted labels
    assert all(round(v, 3) == v for r in records for v in r["bbox"]) and all(
        round(r["score"], 5) == r["score"] for r in records
    )
    assert all(r["bbox"][2] >= 0 and r["bbox"][3] >= 0 for r in records)  # [x, y, w, h], clipped to the image
    assert min(r["score"] for r in records) >= 0.001  # conf_thres
    gt = json.loads((run / "ground_truth_coco.json").read_text())
    assert len(gt["images"]) == IMAGES
    assert len(gt["annotations"]) == sum(len(rows) for rows in _label_rows(subset).values())
    assert gt["categories"][0] == {"id": 0, "name": "person"}

    coco_map, coco_map50 = (_metric(trainer, name) for name in COCO_METRICS)
    assert 0.1 < coco_map < coco_map50 <= 1
    assert coco_map == pytest.approx(_metric(trainer, "metrics/mAP_0.5:0.95"), abs=0.03)  # 101-point COCO vs ours
    lines = capsys.readouterr().out.splitlines()
    first = {key: next(i for i, line in enumerate(lines) if line.lstrip().startswith(key)) for key in ("all", "Speed")}
    summary = next(i for i, line in enumerate(lines) if "Average Precision  (AP) @[ IoU=0.50:0.95" in line)
    assert first["all"] < first["Speed"] < summary  # val.py's order: table, speed, COCO summary
    assert SPEED.match(lines[first["Speed"]]).group(1) == f"{IMAGES}, 3, 160, 160"
    assert f"COCO mAP@0.5:0.95 {coco_map:.3f}, mAP@0.5 {coco_map50:.3f}" in "\n".join(lines)


def test_without_an_evaluator_the_json_is_written_and_one_line_says_what_to_install(
    shared, subset, tmp_path, label_cache, capsys, monkeypatch
):
    monkeypatch.setattr("lightning_yolo.callbacks.val_outputs.coco_backend", lambda: None)
    trainer = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_json=true")
    assert json.loads((tmp_path / "exp" / "yolov5n_predictions.json").read_text())
    assert INSTALL_HINT in capsys.readouterr().out.splitlines()
    assert not set(COCO_METRICS) & set(trainer.callback_metrics)


def _write_coco_annotations(data: Path, path: Path) -> None:
    """A COCO annotation file of the dataset as COCO ships it: COCO's category ids, images by file name."""
    images = sorted((data.parent / "images").glob("*.jpg"))
    labels = _label_rows(data)
    names = load_yaml(data)["names"]
    names = [names[i] for i in range(len(names))] if isinstance(names, dict) else names
    shapes = np.array([cv2.imread(str(p)).shape[1::-1] for p in images])  # (n, 2) [width, height]
    rows = [labels.get(p.stem, np.zeros((0, 5))) for p in images]
    gt = converted_ground_truth([str(p) for p in images], shapes, rows, names)
    for annotation in gt.data["annotations"]:
        annotation["category_id"] = COCO91_IDS[annotation["category_id"]]
    gt.data["categories"] = [{"id": COCO91_IDS[i], "name": n} for i, n in enumerate(names)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gt.data))


@pytest.mark.parametrize("where", ["dataset", "explicit"])
def test_a_coco_annotation_file_is_evaluated_against_with_its_category_ids(
    where, shared, subset, tmp_path, label_cache, capsys, monkeypatch
):
    if where == "dataset":  # COCO's layout: <root>/annotations/instances_<split source>.json
        annotations = subset.parent / "annotations" / "instances_images.json"
        extra = []
    else:
        annotations = tmp_path / "elsewhere" / "gt.json"
        extra = [f"--val.coco_annotations={annotations}"]
    _write_coco_annotations(subset, annotations)
    trainer = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_json=true", *extra)
    records = json.loads((tmp_path / "exp" / "yolov5n_predictions.json").read_text())
    categories = {r["category_id"] for r in records}
    assert categories <= set(COCO91_IDS) and 1 in categories and 0 not in categories  # person is 1 in COCO
    assert not (tmp_path / "exp" / "ground_truth_coco.json").exists()
    assert f"against {annotations}" in capsys.readouterr().out
    assert 0.1 < _metric(trainer, COCO_METRICS[0])


def test_a_missing_coco_annotations_file_is_a_one_line_error(
    shared, subset, tmp_path, label_cache, capsys, monkeypatch
):
    with pytest.raises(SystemExit) as exit_info:
        _validate(monkeypatch, shared, subset, tmp_path, f"--val.coco_annotations={tmp_path / 'none.json'}")
    assert exit_info.value.code == 2
    assert "val.coco_annotations" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ save_txt
def test_save_txt_and_save_conf_write_the_detections_as_yolo_labels(shared, subset, tmp_path, label_cache, monkeypatch):
    extra = ["--val.save_txt=true", "--val.save_conf=true", "--val.save_json=true"]
    _validate(monkeypatch, shared, subset, tmp_path, *extra, command="test")
    run = tmp_path / "exp"
    files = sorted((run / "labels").glob("*.txt"))
    assert files and {f.stem for f in files} <= {p.stem for p in (subset.parent / "images").glob("*.jpg")}
    records = json.loads(next(run.glob("*_predictions.json")).read_text())
    gt = {img["id"]: img for img in json.loads((run / "ground_truth_coco.json").read_text())["images"]}
    for file in files:
        rows = np.loadtxt(file, ndmin=2)  # (n, 6) cls x y w h conf
        assert rows.shape[1] == 6 and (rows[:, 1:5] >= 0).all() and (rows[:, 1:5] <= 1.001).all()
        mine = [r for r in records if r["image_id"] == int(file.stem)]
        w, h = gt[int(file.stem)]["width"], gt[int(file.stem)]["height"]
        x, y, bw, bh = np.array([r["bbox"] for r in mine]).T
        expected = np.stack([[r["category_id"] for r in mine], (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h])
        assert np.allclose(rows[:, :5], expected.T, atol=2e-5)  # the same detections as the JSON, same order
        assert np.allclose(rows[:, 5], [r["score"] for r in mine], atol=1e-5)


def test_save_txt_without_save_conf_writes_five_columns(shared, subset, tmp_path, label_cache, monkeypatch):
    _validate(monkeypatch, shared, subset, tmp_path, "--val.save_txt=true")
    files = sorted((tmp_path / "exp" / "labels").glob("*.txt"))
    assert files and all(np.loadtxt(f, ndmin=2).shape[1] == 5 for f in files)
    assert not list((tmp_path / "exp").glob("*predictions.json"))


# ------------------------------------------------------------------------------------------------ save_hybrid
def test_save_hybrid_adds_the_labels_to_the_predictions(shared, subset, tmp_path, label_cache, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="lightning_yolo"):
        trainer = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_hybrid=true")
    assert "not from predictions alone" in caplog.text
    assert _metric(trainer, "metrics/mAP_0.5") > 0.95 and _metric(trainer, "metrics/mAP_0.5:0.95") > 0.9
    assert trainer.lightning_module.hybrid_labels is False  # switched on for the evaluation only
    for stem, labels in _label_rows(subset).items():  # save_txt is implied: every label is in its image's file
        rows = np.loadtxt(tmp_path / "exp" / "labels" / f"{stem}.txt", ndmin=2)
        for label in labels:
            # within 1% of the image: YOLOv5's scale_boxes maps back with the height's resize ratio for both axes,
            # which at 160 px differs from the width's by up to half a pixel of the resized image
            assert ((rows[:, 0] == label[0]) & (np.abs(rows[:, 1:5] - label[1:]).max(1) < 0.01)).any(), (stem, label)


@pytest.mark.slow
def test_a_fit_logs_coco_metrics_and_ignores_save_hybrid(tiny_dataset, tmp_path, label_cache, monkeypatch, caplog):
    extra = ["--val.save_json=true", "--val.save_hybrid=true", "--trainer.limit_train_batches=1", "--noplots=true"]
    with caplog.at_level(logging.WARNING, logger="lightning_yolo"):
        trainer = _run(monkeypatch, fit_args(tiny_dataset, tmp_path, 1, *extra))
    assert "the validations of this fit use predictions only" in caplog.text
    run = tmp_path / "tiny"
    assert isinstance(json.loads((run / "predictions.json").read_text()), list)
    assert (run / "ground_truth_coco.json").is_file()
    assert set(COCO_METRICS) <= set(trainer.callback_metrics)
    assert _metric(trainer, "metrics/mAP_0.5") < 0.5  # an untrained model's predictions, no labels added


# ------------------------------------------------------------------------------------------------ augment
@pytest.mark.slow
def test_augment_changes_the_detections(shared, subset, tmp_path, label_cache, capsys, monkeypatch):
    plain = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_json=true", "--name=plain")
    tta = _validate(monkeypatch, shared, subset, tmp_path, "--val.save_json=true", "--name=tta", "--model.augment=true")
    assert tta.lightning_module.hparams.augment and not plain.lightning_module.hparams.augment
    first, second = (json.loads((tmp_path / n / "yolov5n_predictions.json").read_text()) for n in ("plain", "tta"))
    assert first != second and len(second) > 0
    assert _metric(tta, "metrics/mAP_0.5") != _metric(plain, "metrics/mAP_0.5")
    assert _metric(tta, "metrics/mAP_0.5") > 0.1
    speed = [SPEED.match(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(m is not None for m in speed) == 2  # one speed line per validate


# ------------------------------------------------------------------------------------------------ coco128 at 640
@pytest.mark.slow
def test_coco_map_of_yolov5n_on_coco128_agrees_with_ours(shared, tmp_path, label_cache, monkeypatch):
    # ../shared/README.md: YOLOv5's val.py on coco128 at 640 gives mAP@0.5 0.545, mAP@0.5:0.95 0.350
    data = shared / "data" / "coco128" / "coco128.yaml"
    trainer = _validate(
        monkeypatch, shared, data, tmp_path, "--data.imgsz=640", "--data.batch_size=16", "--val.save_json=true"
    )
    assert _metric(trainer, "metrics/mAP_0.5:0.95") == pytest.approx(0.350, abs=5e-4)
    assert _metric(trainer, COCO_METRICS[0]) == pytest.approx(0.350, abs=0.02)  # measured: 0.3510
    assert _metric(trainer, COCO_METRICS[1]) == pytest.approx(0.545, abs=0.02)  # measured: 0.5474
