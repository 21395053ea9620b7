"""Export: ONNX (run with onnxruntime) and TorchScript (run with torch.jit.load) match the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_yolo.export import FORMATS, main
from lightning_yolo.export.run import build_parser
from lightning_yolo.predict import load_detector


@pytest.fixture(scope="module")
def reference(shared: Path) -> dict:
    """Reference input (1, 3, 320, 320) and the fused PyTorch model's output on it."""
    ref = torch.load(shared / "reference" / "forward_yolov5n_bus320.pt", weights_only=True)
    detector = load_detector(shared / "weights" / "yolov5n.pt")
    with torch.no_grad():
        output = detector.model(ref["input"])
    torch.testing.assert_close(output, ref["output"], rtol=1e-3, atol=5e-3)  # fusing only rounds differently
    return {"input": ref["input"], "output": output, "weights": shared / "weights" / "yolov5n.pt"}


@pytest.mark.slow
def test_onnx_runs_in_onnxruntime_like_pytorch_with_metadata(reference: dict, tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tmp_path / "yolov5n.onnx"
    argv = ["--weights", str(reference["weights"]), "--format", "onnx", "--imgsz", "320", "--output", str(path)]
    assert main([*argv, "--dynamic", "--opset", "17"]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = session.run(None, {"images": reference["input"].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(output), reference["output"], rtol=1e-4, atol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"])[:2] == ["person", "bicycle"] and meta["stride"] == "32"
    batch = session.run(None, {"images": np.zeros((2, 3, 256, 416), np.float32)})[0]  # dynamic batch and size
    assert batch.shape == (2, 3 * (32 * 52 + 16 * 26 + 8 * 13), 85)


@pytest.mark.slow
def test_torchscript_runs_with_torch_jit_like_pytorch_with_config(reference: dict, tmp_path: Path) -> None:
    path = tmp_path / "yolov5n.torchscript"
    argv = ["--weights", str(reference["weights"]), "--format", "torchscript", "--imgsz", "320"]
    assert main([*argv, "--output", str(path)]) == 0
    files = {"config.txt": ""}
    module = torch.jit.load(str(path), _extra_files=files)
    with torch.no_grad():
        output = module(reference["input"])
    torch.testing.assert_close(output, reference["output"], rtol=1e-4, atol=1e-4)
    config = json.loads(files["config.txt"])
    assert config["stride"] == 32 and len(config["names"]) == 80 and config["shape"] == [1, 3, 320, 320]


def test_half_on_cpu_and_missing_weights_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "missing.pt"
    assert (
        main(["--weights", str(weights), "--format", "torchscript", "--half", "--output", str(tmp_path / "m.pt")]) == 2
    )
    assert capsys.readouterr().err.startswith("error: --half --format torchscript needs a CUDA device")
    assert main(["--weights", str(weights), "--output", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == f"error: cannot load {weights}: no such file\n"
    assert not (tmp_path / "m.onnx").exists()


def test_every_format_is_offered_with_its_own_suffix() -> None:
    choices = next(a.choices for a in build_parser()._actions if a.dest == "format")
    assert sorted(choices) == sorted(FORMATS)
    assert {"onnx", "torchscript", "openvino", "coreml", "engine", "saved_model", "tflite"} <= set(FORMATS)
    assert len({f.suffix for f in FORMATS.values()}) == len(FORMATS)


@pytest.mark.slow
def test_torchscript_from_a_training_checkpoint_rounds_the_size_and_names_its_file(
    reference: dict, tmp_path: Path
) -> None:
    from lightning_yolo.models.weights import load_weights

    source = load_weights(reference["weights"])
    ckpt = tmp_path / "last.ckpt"
    state = {f"ema.module.{k}": v for k, v in source.state_dict.items()}
    torch.save({"state_dict": state, "hyper_parameters": {"cfg": source.yaml, "names": source.names}}, ckpt)
    assert main(["--weights", str(ckpt), "--format", "torchscript", "--imgsz", "300", "250"]) == 0
    files = {"config.txt": ""}
    module = torch.jit.load(str(tmp_path / "last.torchscript"), _extra_files=files)  # default name: weights + suffix
    assert json.loads(files["config.txt"])["shape"] == [1, 3, 320, 256]
    x = reference["input"][..., :256]
    with torch.no_grad():
        torch.testing.assert_close(module(x), load_detector(reference["weights"]).model(x), rtol=1e-4, atol=1e-4)


def test_yolov5_spelling_exports_every_included_format(reference, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    weights = tmp_path / "w.pt"
    weights.symlink_to(Path(reference["weights"]).resolve())
    assert main(["--weights", str(weights), "--include", "torchscript", "onnx", "--img", "128"]) == 0
    files = {"config.txt": ""}
    torch.jit.load(str(tmp_path / "w.torchscript"), _extra_files=files)
    assert json.loads(files["config.txt"])["shape"] == [1, 3, 128, 128]
    assert (tmp_path / "w.onnx").stat().st_size > 1_000_000
    assert main(["--weights", str(weights), "--include", "onnx", "torchscript", "--output", "x.onnx"]) == 2
