"""Exported formats against PyTorch and predict: ONNX --nms, OpenVINO, CoreML structure, the backend layer and
the benchmark table; clear errors for what cannot run here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lightning_yolo.export import main as export_main
from lightning_yolo.export.backends import fit_to_shape, is_exported, load_backend
from lightning_yolo.models.weights import WeightsError
from lightning_yolo.ops.boxes import scale_boxes
from lightning_yolo.ops.iou import box_iou
from lightning_yolo.predict import Predictor, PredictSettings, load_detector


@pytest.fixture(scope="module")
def weights(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


def _export(weights: Path, out: Path, *flags: str) -> Path:
    assert export_main(["--weights", str(weights), "--output", str(out), *flags]) == 0
    return out


@pytest.mark.slow
def test_onnx_nms_gives_the_detections_of_predict(weights: Path, shared: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = _export(weights, tmp_path / "nms.onnx", "--format", "onnx", "--nms", "--dynamic", "--simplify")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictor = Predictor(load_detector(weights), PredictSettings(imgsz=640))
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(shared / "images" / name))
        expected = predictor([image])[0]
        x, (ratio, pad) = predictor._letterbox(image)  # the same input predict runs on
        settings = {"max_det": np.array([1000]), "iou_thres": np.array([0.45], np.float32)}
        boxes, scores, classes, batch = session.run(
            None, {"images": x[None].astype(np.float32) / 255, **settings, "conf_thres": np.array([0.25], np.float32)}
        )
        boxes = scale_boxes(x.shape[1:], torch.from_numpy(boxes), image.shape[:2], (ratio, pad))
        assert (batch == 0).all() and len(scores) == len(expected) > 0
        torch.testing.assert_close(torch.from_numpy(classes).float(), expected[:, 5], rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(scores), expected[:, 4], rtol=0, atol=1e-3)
        assert box_iou(boxes, expected[:, :4]).diagonal().min() > 0.99


@pytest.mark.slow
def test_openvino_fp32_output_equals_pytorch(weights: Path, shared: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    ref = torch.load(shared / "reference" / "forward_yolov5n_bus320.pt", weights_only=True)["input"]
    path = _export(weights, tmp_path / "yolov5n_openvino_model", "--format", "openvino", "--imgsz", "320")
    backend = load_backend(path)
    with torch.no_grad():
        expected = load_detector(weights).model(ref)
    output = backend(ref)
    torch.testing.assert_close(output, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    assert backend.names[:2] == ["person", "bicycle"] and backend.stride == 32 and backend.shape == (320, 320)


@pytest.mark.slow
def test_static_onnx_takes_other_sizes_and_batches(weights: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = _export(weights, tmp_path / "m.onnx", "--format", "onnx", "--imgsz", "128")
    backend = load_backend(path)
    assert (backend.batch, backend.shape) == (1, (128, 128))
    x = torch.rand(3, 3, 96, 128)  # smaller: padded; 3 images: run one by one
    with torch.no_grad():
        expected = load_detector(weights).model(fit_to_shape(x, (128, 128))[0])
    torch.testing.assert_close(backend(x), expected, rtol=1e-3, atol=1e-2)
    big = backend(torch.rand(1, 3, 256, 256))  # larger: shrunk to fit, boxes back in its pixels
    assert big.shape == (1, expected.shape[1], 85) and big[..., :2].max() > 128


def test_coreml_package_holds_input_output_and_metadata(weights: Path, tmp_path: Path) -> None:
    pytest.importorskip("coremltools")
    from lightning_yolo.export.to_coreml import check_package

    path = _export(weights, tmp_path / "m.mlpackage", "--format", "coreml", "--imgsz", "64")
    meta, shape = check_package(path)
    assert shape == [1, 3, 64, 64] and meta.stride == 32 and meta.names[0] == "person"
    if not torch.cuda.is_available() and __import__("sys").platform != "darwin":
        with pytest.raises(WeightsError, match="macOS"):
            load_backend(path)


def test_formats_that_cannot_run_here_say_why(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not torch.cuda.is_available():
        assert export_main(["--weights", str(weights), "--format", "engine"]) == 2
        assert "needs a CUDA device" in capsys.readouterr().err
    assert export_main(["--weights", str(weights), "--format", "torchscript", "--nms"]) == 2
    assert "ONNX options" in capsys.readouterr().err
    assert export_main(["--weights", str(weights), "--format", "openvino", "--int8"]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_exported_files_are_told_from_weights_and_bad_ones_name_the_file(tmp_path: Path) -> None:
    assert is_exported("a.onnx") and is_exported("x/yolov5n_openvino_model") and is_exported("m.tflite")
    assert not is_exported("yolov5n.pt") and not is_exported("last.ckpt") and not is_exported(None)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(WeightsError, match=f"cannot load {bad}"):
        load_backend(bad)
    with pytest.raises(WeightsError, match="no such file"):
        load_backend(tmp_path / "missing.onnx")


def test_missing_exporter_gives_the_install_line(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    assert export_main(["--weights", str(weights), "--format", "openvino"]) == 2
    assert capsys.readouterr().err == "error: --format openvino needs openvino: pip install -e '.[export]'\n"


def test_benchmark_table_reports_failures_in_place(weights: Path, tmp_path: Path) -> None:
    from lightning_yolo.export.benchmark import BenchmarkRow, format_table, write_csv

    rows = [BenchmarkRow("ONNX", 7.5, 0.4567, 12.3), BenchmarkRow("TensorRT", error="needs a CUDA device")]
    table = format_table(rows)
    assert table.splitlines()[0].split("  ")[0] == "Format" and "0.4567" in table and "needs a CUDA device" in table
    write_csv(rows, tmp_path / "b.csv")
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[1] == "ONNX,7.5,0.4567,12.30," and lines[2] == "TensorRT,,,,needs a CUDA device"
    assert json.loads(json.dumps(rows[0].cells()))[0] == "ONNX"


@pytest.mark.slow
def test_validate_on_onnx_gives_the_map_of_pytorch(weights: Path, shared: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from lightning_yolo.export.benchmark import _validate, build_parser

    path = _export(weights, tmp_path / "m.onnx", "--format", "onnx", "--imgsz", "320", "--dynamic")
    data = shared / "data" / "coco128" / "coco128.yaml"
    args = build_parser().parse_args(["--weights", str(weights), "--data", str(data), "--imgsz", "320"])
    args.batch_size, args.workers = 16, 1
    torch_map, _ = _validate(args, weights, 32)  # yolov5n's largest stride
    onnx_map, _ = _validate(args, path, 32)
    assert torch_map > 0.2 and abs(onnx_map - torch_map) < 0.002
