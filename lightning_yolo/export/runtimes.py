"""One :class:`~lightning_yolo.export.backends.Backend` per runtime: TorchScript, ONNX Runtime, OpenVINO,
TensorRT, CoreML, TensorFlow. Each runtime's package is imported when a file of its format is loaded.

Errors are raised as ``ValueError`` (a missing package as
:class:`~lightning_yolo.export.extras.MissingExtraError`); :func:`~lightning_yolo.export.backends.load_backend`
turns them into a ``WeightsError`` naming the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lightning_yolo.export.backends import Backend
from lightning_yolo.export.extras import require
from lightning_yolo.export.metadata import metadata_from_strings

__all__ = ["LOADERS"]


def _fixed(dims: list[object]) -> tuple[int | None, tuple[int, int] | None]:
    """``(batch, (H, W))`` of an input shape, each None where the dimension is dynamic (a name or -1)."""
    static = [d if isinstance(d, int) and d > 0 else None for d in dims]
    shape = (static[2], static[3]) if static[2] is not None and static[3] is not None else None
    return static[0], shape  # type: ignore[return-value]


class TorchScriptBackend(Backend):
    """``torch.jit.load`` with ``config.txt``; a traced model keeps the input size and batch it was traced with."""

    def __init__(self, path: Path, device: torch.device) -> None:
        files = {"config.txt": ""}
        try:
            self.module = torch.jit.load(str(path), map_location=device, _extra_files=files).eval()
        except RuntimeError as exc:
            raise ValueError(f"not a TorchScript file ({str(exc).splitlines()[0]})") from None
        config = json.loads(files["config.txt"] or "{}")
        meta = metadata_from_strings({k: json.dumps(v) for k, v in config.items()}, str(path))
        shape = config.get("shape") or [meta.batch, 3, *meta.imgsz]
        self.half = next(self.module.parameters()).dtype == torch.float16
        super().__init__(path, meta, device, (int(shape[2]), int(shape[3])), int(shape[0]))

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device).half() if self.half else x.to(self.device))


class OnnxBackend(Backend):
    """ONNX Runtime: the CUDA provider on a CUDA device when onnxruntime-gpu is installed, else the CPU."""

    def __init__(self, path: Path, device: torch.device) -> None:
        ort = require("onnxruntime", "an ONNX model")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"not an ONNX model ({str(exc).splitlines()[0]})") from None
        meta = metadata_from_strings(self.session.get_modelmeta().custom_metadata_map, str(path))
        first = self.session.get_inputs()[0]
        self.input_name, self.half = first.name, first.type == "tensor(float16)"
        batch, shape = _fixed(list(first.shape)) if len(first.shape) == 4 else (None, None)
        super().__init__(path, meta, device, shape, batch)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        array = x.cpu().numpy().astype(np.float16 if self.half else np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


class OpenVINOBackend(Backend):
    """OpenVINO on its CPU plugin: a ``*_openvino_model/`` folder (IR ``.xml`` + ``.bin`` + ``metadata.yaml``)."""

    def __init__(self, path: Path, device: torch.device) -> None:
        from lightning_yolo.settings import load_yaml

        ov = require("openvino", "an OpenVINO model")
        xml = path if path.suffix == ".xml" else next(iter(sorted(path.glob("*.xml"))), None)
        if xml is None or not xml.with_suffix(".bin").is_file():
            raise ValueError("no OpenVINO IR (.xml and .bin) in the folder")
        meta_file = xml.parent / "metadata.yaml"
        if not meta_file.is_file():
            raise ValueError(f"{meta_file} is missing (names, stride and size of the model)")
        values = load_yaml(meta_file)
        meta = metadata_from_strings(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}, str(path)
        )
        core = ov.Core()
        model = core.read_model(str(xml))
        self.compiled = core.compile_model(model, "CPU")
        dims = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
        batch, shape = _fixed(dims)
        super().__init__(path, meta, device, shape, batch)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        result = self.compiled([x.cpu().numpy()])
        return torch.from_numpy(np.asarray(result[self.compiled.outputs[0]]))


class TensorRTBackend(Backend):
    """A TensorRT engine (JSON metadata header, then the serialized engine) on the CUDA device it was built on."""

    def __init__(self, path: Path, device: torch.device) -> None:
        from lightning_yolo.export.to_tensorrt import read_engine_file

        if device.type != "cuda":
            raise ValueError("a TensorRT engine runs on a CUDA device only (--device 0)")
        trt = require("tensorrt", "a TensorRT engine")
        meta, blob = read_engine_file(path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ValueError("TensorRT could not deserialize the engine (built with another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = self.engine.get_tensor_name(0), self.engine.get_tensor_name(1)
        self.half = self.engine.get_tensor_dtype(self.input_name) == trt.DataType.HALF
        batch, shape = _fixed(list(self.engine.get_tensor_shape(self.input_name)))
        super().__init__(path, meta, device, shape, batch)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).half() if self.half else x.to(self.device)
        x = x.contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(out_shape, dtype=x.dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream)
        torch.cuda.current_stream(self.device).synchronize()
        return out


class CoreMLBackend(Backend):
    """A CoreML ``.mlpackage``: coremltools predicts on macOS only."""

    def __init__(self, path: Path, device: torch.device) -> None:
        from lightning_yolo.export.to_coreml import read_metadata

        ct = require("coremltools", "a CoreML model")
        if sys.platform != "darwin":
            raise ValueError(
                "CoreML models run on macOS only (coremltools cannot predict on this platform); "
                "run it on a Mac, or export another format"
            )
        self.model = ct.models.MLModel(str(path))
        meta, shape = read_metadata(self.model.get_spec(), str(path))
        super().__init__(path, meta, device, (shape[2], shape[3]), shape[0])

    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.predict({"images": x.cpu().numpy()})
        return torch.from_numpy(np.asarray(next(iter(out.values())), dtype=np.float32))


class TFLiteBackend(Backend):
    """A ``.tflite`` file (NHWC input) with its ``<stem>.json`` metadata, run by ai-edge-litert's interpreter."""

    def __init__(self, path: Path, device: torch.device) -> None:
        litert = require("ai_edge_litert.interpreter", "a .tflite model")
        meta_file = path.with_suffix(".json")
        if not meta_file.is_file():
            raise ValueError(f"{meta_file} is missing (names, stride and size of the model)")
        values = json.loads(meta_file.read_text())
        meta = metadata_from_strings({k: json.dumps(v) for k, v in values.items()}, str(path))
        self.interpreter = litert.Interpreter(model_path=str(path))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        bs, h, w, _ = (int(d) for d in self.input["shape"])
        super().__init__(path, meta, device, (h, w), bs)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.interpreter.set_tensor(self.input["index"], x.permute(0, 2, 3, 1).cpu().numpy())  # NCHW -> NHWC
        self.interpreter.invoke()
        return torch.from_numpy(self.interpreter.get_tensor(self.output["index"]).copy())


def _saved_model(path: Path, device: torch.device) -> Backend:
    raise ValueError(
        "running a TensorFlow SavedModel needs tensorflow, which cannot share this environment (numpy<2.2); "
        "predict and validate run the .tflite export instead"
    )


LOADERS: dict[str, Callable[[Path, torch.device], Backend]] = {
    "torchscript": TorchScriptBackend,
    "onnx": OnnxBackend,
    "openvino": OpenVINOBackend,
    "engine": TensorRTBackend,
    "coreml": CoreMLBackend,
    "saved_model": _saved_model,
    "tflite": TFLiteBackend,
}
"""Export format -> loader of its files."""
