"""The predict command and its predictor: parity with detect.py on bus.jpg, outputs, video, TTA, bad sources."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from lightning_yolo.predict import Predictor, PredictSettings, augmented_forward, load_detector, main


@pytest.fixture(scope="module")
def weights(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


@pytest.fixture(scope="module")
def detector(weights: Path):  # noqa: ANN201 - a Detector
    return load_detector(weights)


def _video(path: Path, frames: int = 5, size: tuple[int, int] = (128, 96)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 60, np.uint8)
        cv2.circle(frame, (30 + 10 * i, 48), 20, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.mark.slow
def test_against_detect_py_on_bus_writes_pictures_labels_and_json(
    shared: Path, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--weights", str(weights), "--source", str(shared / "images"), "--project", str(tmp_path)]
    assert main([*argv, "--save-txt", "--save-conf", "--save-crop"]) == 0
    run = tmp_path / "exp"
    assert "results saved to" in capsys.readouterr().out
    for name in ("bus", "zidane"):
        drawn = cv2.imread(str(run / f"{name}.jpg"))
        original = cv2.imread(str(shared / "images" / f"{name}.jpg"))
        assert drawn.shape == original.shape and not np.array_equal(drawn, original)
        assert (run / "labels" / f"{name}.txt").read_text().strip()
    expected = json.loads((shared / "reference" / "detect_yolov5n_bus640.json").read_text())
    ref = torch.tensor(expected["detections_xyxy_conf_cls"])
    records = [r for r in json.loads((run / "predictions.json").read_text()) if r["image_id"] == "bus"]
    got = torch.tensor([[*r["bbox"], r["score"], r["category_id"]] for r in records])
    got[:, 2:4] += got[:, :2]  # top-left xywh -> xyxy
    assert sorted(got[:, 5].tolist()) == sorted(ref[:, 5].tolist())
    iou = box_iou(got[:, :4], ref[:, :4])
    assert (iou.max(1).values > 0.99).all() and (iou.max(0).values > 0.99).all()
    lines = (run / "labels" / "bus.txt").read_text().splitlines()
    assert len(lines) == 5 and all(len(line.split()) == 6 for line in lines)  # cls x y w h conf
    assert sorted(p.name for p in (run / "crops").iterdir()) == ["bus", "person", "tie"]


def test_predictor_class_filter_and_agnostic(detector, shared: Path) -> None:  # noqa: ANN001
    image = cv2.imread(str(shared / "images" / "bus.jpg"))
    only_bus = Predictor(detector, PredictSettings(imgsz=320, classes=[5]))([image])[0]
    assert len(only_bus) >= 1 and (only_bus[:, 5] == 5).all()
    agnostic = Predictor(detector, PredictSettings(imgsz=320, agnostic=True, conf=0.1))([image])[0]
    per_class = Predictor(detector, PredictSettings(imgsz=320, conf=0.1))([image])[0]
    assert len(agnostic) <= len(per_class)


def test_image_size_is_rounded_up_to_the_stride(detector, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    with caplog.at_level(logging.WARNING, logger="lightning_yolo"):
        assert Predictor(detector, PredictSettings(imgsz=330)).imgsz == 352
    assert "using 352" in caplog.text
    assert Predictor(detector, PredictSettings(imgsz=320)).imgsz == 320


def test_mixed_shapes_in_one_call_map_boxes_to_each_picture(detector, shared: Path) -> None:  # noqa: ANN001
    bus = cv2.imread(str(shared / "images" / "bus.jpg"))
    zidane = cv2.imread(str(shared / "images" / "zidane.jpg"))
    predictor = Predictor(detector, PredictSettings(imgsz=320))
    together = predictor([bus, zidane, bus])
    alone = predictor([zidane])[0]
    torch.testing.assert_close(together[1], alone)
    torch.testing.assert_close(together[0], together[2])
    assert (together[0][:, 2] <= bus.shape[1]).all() and (together[0][:, 3] <= bus.shape[0]).all()


def test_tta_drops_coarsest_level_of_full_pass_and_finest_of_smallest(detector) -> None:  # noqa: ANN001
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        out = augmented_forward(detector.model, x)

    def rows(h: int, w: int, strides: tuple[int, ...]) -> int:
        return sum(3 * (h // s) * (w // s) for s in strides)

    # 0.83 x (160, 224) -> 132 x 185, padded to 160 x 192; 0.67 x -> 107 x 150, padded to 128 x 160
    expected = rows(160, 224, (8, 16)) + rows(160, 192, (8, 16, 32)) + rows(128, 160, (16, 32))
    assert out.shape == (1, expected, 85)


def test_tta_finds_the_bus_scene(detector, shared: Path) -> None:  # noqa: ANN001
    image = cv2.imread(str(shared / "images" / "bus.jpg"))
    det = Predictor(detector, PredictSettings(imgsz=320, augment=True))([image])[0]
    assert {0, 5} <= set(det[:, 5].int().tolist())


@pytest.mark.slow
def test_training_checkpoint_predicts_like_the_weights_it_holds(detector, tmp_path: Path, shared: Path) -> None:  # noqa: ANN001
    from lightning_yolo.models.weights import load_weights

    source = load_weights(shared / "weights" / "yolov5n.pt")
    names = [f"thing{i}" for i in range(80)]
    ckpt = tmp_path / "last.ckpt"
    state = {f"ema.module.{k}": v for k, v in source.state_dict.items()}
    torch.save({"state_dict": state, "hyper_parameters": {"cfg": source.yaml, "names": names}}, ckpt)
    from_ckpt = load_detector(ckpt)
    assert from_ckpt.names == names and from_ckpt.stride == 32
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(from_ckpt.model(x), detector.model(x))


@pytest.mark.slow
def test_video_gives_a_video_with_the_same_frame_count(weights: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.avi", frames=5)
    argv = ["--weights", str(weights), "--source", str(video), "--imgsz", "160", "--project", str(tmp_path / "runs")]
    assert main([*argv, "--save-txt", "--conf", "0.01"]) == 0
    outputs = [p for p in (tmp_path / "runs" / "exp").iterdir() if p.suffix in (".mp4", ".avi")]
    assert len(outputs) == 1 and _frame_count(outputs[0]) == 5
    assert len(list((tmp_path / "runs" / "exp" / "labels").glob("clip_*.txt"))) == 5


@pytest.mark.parametrize("kind", ["missing", "empty_folder"])
def test_bad_source_is_an_error_naming_it(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    source = tmp_path / ("nothing_here.jpg" if kind == "missing" else "empty")
    if kind == "empty_folder":
        source.mkdir()
    assert main(["--weights", str(weights), "--source", str(source), "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(source) in err


@pytest.mark.slow
def test_unreadable_image_is_counted_and_the_rest_predicted(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "ok.jpg"), np.full((64, 80, 3), 100, np.uint8))
    (folder / "bad.jpg").write_text("not an image")
    argv = ["--weights", str(weights), "--imgsz", "160", "--project", str(tmp_path / "runs")]
    assert main([*argv, "--source", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "1 pictures" in captured.out and "1 skipped" in captured.out and "bad.jpg" in captured.err
    assert main([*argv, "--source", str(folder / "bad.jpg")]) == 2  # nothing readable at all
    assert f"error: {folder / 'bad.jpg'}: no picture could be read" in capsys.readouterr().err


def test_missing_weights_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    assert main(["--weights", str(tmp_path / "none.pt"), "--source", str(tmp_path / "a.jpg")]) == 2
    assert capsys.readouterr().err == f"error: cannot load {tmp_path / 'none.pt'}: no such file\n"


NO_LIGHTNING = """
import sys
from pathlib import Path

import torch

import lightning_yolo.export
import lightning_yolo.export.convert
import lightning_yolo.predict
from lightning_yolo.models.weights import build_model_from_weights
from lightning_yolo.models.yolo import DetectionModel

model = DetectionModel("yolov5n", nc=2)
state = {f"model.{k}": v for k, v in model.state_dict().items()}
path = Path(sys.argv[1])
torch.save({"state_dict": state, "hyper_parameters": {"cfg": model.yaml, "names": ["a", "b"]}}, path)
assert build_model_from_weights(path).names == ["a", "b"]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"))
print(loaded + sorted(m for m in sys.modules if m == "lightning_yolo.module"))
"""


@pytest.mark.slow
def test_predict_export_and_convert_load_a_checkpoint_without_lightning(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", NO_LIGHTNING, str(tmp_path / "last.ckpt")], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"
