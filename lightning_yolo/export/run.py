"""``export``: write a fused detection model as ONNX or TorchScript, runnable without lightning_yolo.

The exported graph is the model's eval forward: input ``images`` float (bs, 3, H, W) RGB in [0, 1], output
``output0`` float (bs, N, 5 + nc) of decoded predictions (centre x, centre y, width, height in input pixels,
objectness, class probabilities), ready for NMS. Class names, stride and input size travel inside the file:

* ONNX: ``metadata_props`` keys ``names`` (JSON list), ``stride`` (int), ``imgsz`` (JSON ``[H, W]``);
  read them with ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``.
* TorchScript: an extra file ``config.txt`` holding JSON ``{"names", "stride", "shape"}``; read it with
  ``files = {"config.txt": ""}; torch.jit.load(path, _extra_files=files)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_yolo.models.weights import WeightsError

__all__ = ["FORMATS", "build_parser", "export_onnx", "export_torchscript", "main"]

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}
"""Supported formats and the suffix of the file each writes by default."""


def build_parser() -> argparse.ArgumentParser:
    """The ``export`` command line."""
    p = argparse.ArgumentParser(prog="lightning_yolo export", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="file format")
    p.add_argument("--imgsz", type=int, nargs="+", default=[640], help="input size: one value, or height width")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the example input")
    p.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch, height and width")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--half", action="store_true", help="float16 weights and input (needs a CUDA device)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or a bare GPU index such as 0")
    p.add_argument("--output", default=None, help="output file (default: the weights path with the format suffix)")
    return p


def _metadata(names: list[str], stride: int, shape: Sequence[int]) -> dict[str, str]:
    return {"names": json.dumps(names), "stride": str(stride), "imgsz": json.dumps(list(shape))}


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    metadata: dict[str, str],
    opset: int = 17,
    dynamic: bool = False,
) -> Path:
    """Export with PyTorch's TorchScript-based ONNX exporter (works offline), then add ``metadata`` and check it."""
    import onnx

    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    torch.onnx.export(
        model,
        (example,),
        str(path),
        opset_version=opset,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes=axes if dynamic else None,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, str]) -> Path:
    """Trace the model and save it with ``config.txt`` (JSON names, stride and input shape) as an extra file."""
    traced = torch.jit.trace(model, example, strict=False)
    config = {
        "names": json.loads(metadata["names"]),
        "stride": int(metadata["stride"]),
        "shape": list(example.shape),
    }
    torch.jit.save(traced, str(path), _extra_files={"config.txt": json.dumps(config)})
    return path


def _example_input(args: argparse.Namespace, stride: int, device: torch.device) -> torch.Tensor:
    """A zero input (bs, 3, H, W) with H, W rounded up to multiples of the stride."""
    from lightning_yolo.predict.predictor import check_imgsz

    sizes = args.imgsz * 2 if len(args.imgsz) == 1 else args.imgsz
    if len(sizes) != 2 or min(sizes) <= 0 or args.batch_size <= 0:
        raise ValueError(f"--imgsz {args.imgsz}: give one or two positive sizes; --batch-size must be positive")
    h, w = (check_imgsz(s, stride) for s in sizes)
    return torch.zeros(args.batch_size, 3, h, w, device=device)


def _export(args: argparse.Namespace) -> Path:
    from lightning_yolo.predict.predictor import load_detector
    from lightning_yolo.predict.run import parse_device

    device = parse_device(args.device)
    if args.half and device.type != "cuda":
        raise ValueError("--half needs a CUDA device (--device 0); float16 is not supported on CPU")
    detector = load_detector(args.weights, device)
    model = detector.model.half() if args.half else detector.model
    model.model[-1]._grids.clear()  # cell grids must be built inside the traced graph, not taken from a cache
    example = _example_input(args, detector.stride, device)
    example = example.half() if args.half else example
    path = Path(args.output) if args.output else Path(args.weights).with_suffix(FORMATS[args.format])
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _metadata(detector.names, detector.stride, example.shape[2:])
    if args.format == "onnx":
        return export_onnx(model, example, path, meta, args.opset, args.dynamic)
    return export_torchscript(model, example, path, meta)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export`` with command-line arguments; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        path = _export(args)
    except (WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = path.stat().st_size / 1e6
    print(f"exported {args.weights} to {path} ({args.format}, {size:.1f} MB)")
    return 0
