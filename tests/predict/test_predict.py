"""The predict command and its predictor: parity with detect.py on bus.jpg, outputs, video, TTA, bad sources."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media_helpers import frame_count, write_video
from torchvision.ops import box_iou

from lightning_yolo.predict import Frame, Predictor, PredictSettings, augmented_forward, load_detector, main
from lightning_yolo.predict import run as predict_run
from lightning_yolo.predict.run import build_parser
from lightning_yolo.predict.writers import annotate


@pytest.fixture(scope="module")
def weights(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


@pytest.fixture(scope="module")
def detector(weights: Path):  # noqa: ANN201 - a Detector
    return load_detector(weights)


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
def test_video_gives_a_video_with_the_sameframe_count(weights: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=5, size=(128, 96))
    argv = ["--weights", str(weights), "--source", str(video), "--imgsz", "160", "--project", str(tmp_path / "runs")]
    assert main([*argv, "--save-txt", "--conf", "0.01"]) == 0
    outputs = [p for p in (tmp_path / "runs" / "exp").iterdir() if p.suffix in (".mp4", ".avi")]
    assert len(outputs) == 1 and frame_count(outputs[0]) == 5
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


# --------------------------------------------------------------------------------------------------------------
# detect.py's drawing, video, size, precision and CSV options
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus_png(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bus.jpg as a PNG, so the annotated output is lossless and can be compared pixel for pixel."""
    path = tmp_path_factory.mktemp("bus") / "bus.png"
    cv2.imwrite(str(path), cv2.imread(str(shared / "images" / "bus.jpg")))
    return path


def _predict_into(weights: Path, source: Path, tmp_path: Path, name: str, *extra: str) -> Path:
    """Run predict at imgsz 320 into ``tmp_path/runs/<name>`` and return that folder."""
    argv = ["--weights", str(weights), "--source", str(source), "--imgsz", "320"]
    assert main([*argv, "--project", str(tmp_path / "runs"), "--name", name, *extra]) == 0
    return tmp_path / "runs" / name


def _detections(run: Path, image_id: str) -> torch.Tensor:
    """The (n, 6) xyxy detections of one picture, read back from the run's predictions.json."""
    records = [r for r in json.loads((run / "predictions.json").read_text()) if r["image_id"] == image_id]
    det = torch.tensor([[*r["bbox"], r["score"], r["category_id"]] for r in records]).reshape(-1, 6)
    det[:, 2:4] += det[:, :2]  # top-left xywh -> xyxy
    return det


def test_parser_keeps_detect_py_defaults_and_underscore_spellings() -> None:
    args = build_parser().parse_args(["--weights", "w.pt", "--source", "s"])
    assert (args.imgsz, args.line_thickness, args.vid_stride) == ([640], 3, 1)
    assert not (args.hide_labels or args.hide_conf or args.half or args.save_csv)
    spelled = ["--line_thickness", "5", "--hide_labels", "--hide_conf", "--vid_stride", "2", "--save_csv"]
    yolov5 = ["--img", "480", "640", "--conf-thres", "0.5", "--iou-thres", "0.6", "--agnostic-nms"]
    args = build_parser().parse_args(["--weights", "w.pt", "--source", "s", *spelled, *yolov5])
    assert (args.line_thickness, args.hide_labels, args.hide_conf, args.vid_stride, args.save_csv) == (5, 1, 1, 2, 1)
    assert (args.imgsz, args.conf, args.iou, args.agnostic) == ([480, 640], 0.5, 0.6, True)


def test_annotate_line_width_and_hidden_labels_on_a_blank_picture() -> None:
    blank = np.zeros((200, 200, 3), np.uint8)
    det = torch.tensor([[50.0, 100.0, 150.0, 180.0, 0.9, 0.0]])

    def drawn_rows(image: np.ndarray) -> int:  # rows of the box's left edge band that were painted at x = 100
        return int((image[:, 100].max(1) > 0).sum())

    thin, thick = annotate(blank, det, ["thing"], line_width=1), annotate(blank, det, ["thing"], line_width=9)
    assert (thick.max(2) > 0).sum() > (thin.max(2) > 0).sum()
    hidden = annotate(blank, det, ["thing"], line_width=2, hide_labels=True)
    assert not hidden[:95].any()  # nothing above the box: no label tag
    shown = annotate(blank, det, ["thing"], line_width=2)
    assert shown[:95].any() and drawn_rows(shown) > drawn_rows(hidden)
    short = annotate(blank, det, ["thing"], line_width=2, hide_conf=True)
    assert 0 < (short[:95].max(2) > 0).sum() < (shown[:95].max(2) > 0).sum()  # a shorter tag: "thing", no "0.90"


def test_line_thickness_reaches_the_saved_picture(detector, weights: Path, bus_png: Path, tmp_path: Path) -> None:  # noqa: ANN001
    thin = _predict_into(weights, bus_png, tmp_path, "thin", "--line-thickness", "1")
    thick = _predict_into(weights, bus_png, tmp_path, "thick", "--line_thickness", "8")
    image, det = cv2.imread(str(bus_png)), _detections(thin, "bus")
    assert len(det) >= 3
    assert np.array_equal(cv2.imread(str(thin / "bus.png")), annotate(image, det, detector.names, line_width=1))
    assert np.array_equal(cv2.imread(str(thick / "bus.png")), annotate(image, det, detector.names, line_width=8))


@pytest.mark.slow
def test_hide_labels_and_hide_conf_reach_the_saved_picture(
    detector,  # noqa: ANN001
    weights: Path,
    bus_png: Path,
    tmp_path: Path,
) -> None:
    plain = _predict_into(weights, bus_png, tmp_path, "plain")
    no_labels = _predict_into(weights, bus_png, tmp_path, "no_labels", "--hide-labels")
    no_conf = _predict_into(weights, bus_png, tmp_path, "no_conf", "--hide-conf")
    image, det, names = cv2.imread(str(bus_png)), _detections(plain, "bus"), detector.names
    assert np.array_equal(cv2.imread(str(plain / "bus.png")), annotate(image, det, names, line_width=3))
    assert np.array_equal(cv2.imread(str(no_labels / "bus.png")), annotate(image, det, names, 3, hide_labels=True))
    assert np.array_equal(cv2.imread(str(no_conf / "bus.png")), annotate(image, det, names, 3, hide_conf=True))
    outputs = [cv2.imread(str(run / "bus.png")) for run in (plain, no_labels, no_conf)]
    assert not np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])


def test_save_csv_writes_detect_py_columns_one_row_per_box(
    detector,  # noqa: ANN001
    weights: Path,
    bus_png: Path,
    tmp_path: Path,
) -> None:
    run = _predict_into(weights, bus_png, tmp_path, "csv", "--save-csv")
    with open(run / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    det = _detections(run, "bus")
    expected = [["bus.png", detector.names[int(c)], f"{s:.2f}"] for *_, s, c in reversed(det.tolist())]
    assert rows[0] == ["Image Name", "Prediction", "Confidence"]
    assert rows[1:] == expected and len(expected) >= 3 and {r[1] for r in expected} >= {"person", "bus"}
    assert not (_predict_into(weights, bus_png, tmp_path, "no_csv") / "predictions.csv").exists()


def test_vid_stride_predicts_every_nth_frame(weights: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=7, size=(128, 96))
    argv = ["--weights", str(weights), "--source", str(video), "--imgsz", "160", "--project", str(tmp_path / "runs")]
    assert main([*argv, "--vid-stride", "3", "--save-txt", "--save-csv", "--conf", "0.001"]) == 0
    run = tmp_path / "runs" / "exp"
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["clip_3.txt", "clip_6.txt"]
    outputs = [p for p in run.iterdir() if p.suffix in (".mp4", ".avi")]
    assert len(outputs) == 1 and frame_count(outputs[0]) == 2
    names = {row[0] for row in csv.reader((run / "predictions.csv").read_text().splitlines()[1:])}
    assert names <= {"clip.avi:3", "clip.avi:6"}


def test_non_square_imgsz_gives_the_letterboxed_input_shape(detector, shared: Path) -> None:  # noqa: ANN001
    bus = cv2.imread(str(shared / "images" / "bus.jpg"))  # 1080 x 810 (h x w)
    shapes: list[tuple[int, ...]] = []
    hook = detector.model.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape)))
    try:
        tall = Predictor(detector, PredictSettings(imgsz=(320, 160)))([bus])[0]
        Predictor(detector, PredictSettings(imgsz=320))([bus])
    finally:
        hook.remove()
    # (320, 160): scale min(320/1080, 160/810) -> 213 x 160; the padding left is cut to its remainder modulo the
    # stride (YOLOv5's auto letterbox): 213 + (320 - 213) % 32 = 224. Square 320: 320 x 240, 240 + 80 % 32 = 256.
    assert shapes == [(1, 3, 224, 160), (1, 3, 320, 256)]
    assert (tall[:, [0, 2]] <= 810).all() and (tall[:, [1, 3]] <= 1080).all() and len(tall)


@pytest.mark.slow
def test_imgsz_height_width_reaches_the_model(
    weights: Path, bus_png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: list[tuple[int, ...]] = []

    def spying_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        loaded = load_detector(*args, **kwargs)
        loaded.model.register_forward_pre_hook(lambda _, inputs: shapes.append(tuple(inputs[0].shape)))
        return loaded

    monkeypatch.setattr(predict_run, "load_detector", spying_load)
    argv = ["--weights", str(weights), "--source", str(bus_png), "--project", str(tmp_path), "--nosave"]
    assert main([*argv, "--imgsz", "320", "160"]) == 0
    assert main([*argv, "--img-size", "320"]) == 0
    assert shapes == [(1, 3, 224, 160), (1, 3, 320, 256)]


@pytest.mark.parametrize("sizes", [["320", "160", "96"], ["0"], ["320", "-32"]])
def test_bad_imgsz_is_a_one_line_error(
    weights: Path, bus_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture, sizes: list[str]
) -> None:
    argv = ["--weights", str(weights), "--source", str(bus_png), "--project", str(tmp_path), "--imgsz", *sizes]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err == f"error: --imgsz {' '.join(sizes)}: give one or two positive sizes (height width)\n"
    )


def test_half_on_cpu_is_a_one_line_error_before_any_work(
    weights: Path, bus_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--weights", str(weights), "--source", str(bus_png), "--project", str(tmp_path / "runs"), "--half"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "error: --half needs a CUDA device (e.g. --device 0), not --device cpu\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_half_detector_runs_in_float16_and_finds_the_same_boxes(detector, weights: Path, shared: Path) -> None:  # noqa: ANN001
    bus = cv2.imread(str(shared / "images" / "bus.jpg"))
    half = load_detector(weights, half=True)  # float16 convolutions run (slowly) on the CPU too
    dtypes: list[torch.dtype] = []
    half.model.register_forward_pre_hook(lambda _, args: dtypes.append(args[0].dtype))
    got = Predictor(half, PredictSettings(imgsz=320))([bus])[0]
    full = Predictor(detector, PredictSettings(imgsz=320))([bus])[0]
    assert dtypes == [torch.float16] and got.dtype == torch.float32
    assert got[:, 5].tolist() == full[:, 5].tolist()
    assert (box_iou(got[:, :4], full[:, :4]).diagonal() > 0.98).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_on_cuda_predicts(weights: Path, bus_png: Path, tmp_path: Path) -> None:
    run = _predict_into(weights, bus_png, tmp_path, "half", "--half", "--device", "0")
    assert {int(c) for c in _detections(run, "bus")[:, 5].tolist()} >= {0, 5}


def test_ctrl_c_keeps_what_was_predicted(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    class InterruptedAfterTwoFrames:
        skipped: list = []

        def __iter__(self):  # noqa: ANN204
            for number in (1, 2):
                yield Frame(Path("live"), np.full((96, 128, 3), 80, np.uint8), number, 0, 10.0)
            raise KeyboardInterrupt

    monkeypatch.setattr(predict_run, "_open_reader", lambda args: InterruptedAfterTwoFrames())
    argv = ["--weights", str(weights), "--source", "0", "--imgsz", "160", "--project", str(tmp_path), "--save-txt"]
    assert main([*argv, "--batch-size", "1"]) == 130
    run = tmp_path / "exp"
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["live_1.txt", "live_2.txt"]
    assert frame_count(next(run.glob("live.*"))) == 2 and (run / "predictions.json").is_file()
    captured = capsys.readouterr()
    assert "2 pictures" in captured.out and captured.err.endswith("interrupted\n")


@pytest.mark.parametrize(("kind", "what"), [("folder", "a folder"), ("fifo", "a FIFO")])
def test_weights_that_are_not_a_file_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str, what: str
) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    weights = tmp_path / "weights.pt"
    weights.mkdir() if kind == "folder" else os.mkfifo(weights)  # a FIFO must never be opened: it would block
    assert main(["--weights", str(weights), "--source", str(tmp_path / "a.jpg"), "--project", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: cannot load {weights}: {what}\n"
