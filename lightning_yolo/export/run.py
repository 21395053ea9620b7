"""``export``: write a fused detection model for another runtime (ONNX, TorchScript, OpenVINO, CoreML, TensorRT).

The formats, what their files hold and how to read it back are described in :mod:`lightning_yolo.export.formats`;
``predict --weights`` and ``validate --model.weights`` run every exported file directly.

Example::

    python -m lightning_yolo export --weights yolov5n.pt --format onnx --imgsz 640 --simplify --nms
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_yolo.export.formats import FORMATS, ExportJob, output_path
from lightning_yolo.models.weights import WeightsError
from lightning_yolo.settings import round_to_stride

__all__ = ["build_parser", "export", "main"]

HALF_ON_CPU = ("openvino", "coreml")
"""Formats that can be written in float16 without a CUDA device (the file is float16; the writer's device is not
what it runs on)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``export`` command line."""
    p = argparse.ArgumentParser(prog="lightning_yolo export", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="file format")
    p.add_argument(
        "--include", nargs="+", choices=list(FORMATS), default=None, help="YOLOv5's spelling: one or more formats"
    )
    p.add_argument(
        "--imgsz", "--img", "--img-size", type=int, nargs="+", default=[640], help="one size, or height width"
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the example input")
    p.add_argument("--dynamic", action="store_true", help="ONNX, OpenVINO: any batch size and input size")
    p.add_argument("--simplify", action="store_true", help="ONNX: slim the graph with onnxslim")
    p.add_argument("--nms", action="store_true", help="ONNX: end the graph in NMS (final boxes, scores, classes)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument(
        "--half", action="store_true", help="float16 (ONNX, TorchScript and TensorRT need a CUDA device for it)"
    )
    p.add_argument("--int8", action="store_true", help="OpenVINO: INT8 post-training quantisation (needs --data)")
    p.add_argument("--data", default=None, help="dataset yaml whose images calibrate --int8")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or a bare GPU index such as 0")
    p.add_argument("--output", default=None, help="output path (default: beside the weights, named for the format)")
    return p


def _example_input(args: argparse.Namespace, stride: int, device: torch.device) -> torch.Tensor:
    """A zero input (bs, 3, H, W) with H, W rounded up to multiples of the stride."""
    sizes = args.imgsz * 2 if len(args.imgsz) == 1 else args.imgsz
    if len(sizes) != 2 or min(sizes) <= 0 or args.batch_size <= 0:
        raise ValueError(f"--imgsz {args.imgsz}: give one or two positive sizes; --batch-size must be positive")
    h, w = (round_to_stride(s, stride) for s in sizes)
    return torch.zeros(args.batch_size, 3, h, w, device=device)


def _check_options(args: argparse.Namespace, device: torch.device) -> None:
    """Option combinations that cannot work, refused before the model loads."""
    if args.half and device.type != "cuda" and args.format not in HALF_ON_CPU:
        raise ValueError(
            f"--half --format {args.format} needs a CUDA device (--device 0); float16 is not supported on CPU"
        )
    if args.format == "engine" and device.type != "cuda":
        raise ValueError("--format engine needs a CUDA device (--device 0): TensorRT builds an engine on its GPU")
    if (args.nms or args.simplify) and args.format != "onnx":
        raise ValueError(f"--nms and --simplify are ONNX options, not --format {args.format}")
    if args.int8 and (args.format != "openvino" or not args.data):
        raise ValueError("--int8 is for --format openvino and needs --data (a dataset yaml to calibrate on)")
    if args.half and args.int8:
        raise ValueError("--half and --int8 exclude each other")


def export(args: argparse.Namespace) -> Path:
    """Load the weights, build the job and write the format; returns what was written.

    Raises:
        WeightsError: the weights cannot be read (or are an exported file: export needs PyTorch weights).
        ValueError: bad options, a missing optional package (the message holds the ``pip install`` line), or a
            converter failure.
    """
    # Inference code (torchvision, OpenCV) is imported only when exporting, not with this package.
    from lightning_yolo.export.backends import is_exported
    from lightning_yolo.predict.predictor import load_detector, parse_device

    device = parse_device(args.device)
    _check_options(args, device)
    if is_exported(args.weights):
        raise ValueError(f"--weights {args.weights}: export reads PyTorch weights (.pt, .ckpt), not an exported model")
    detector = load_detector(args.weights, device)  # fresh: no cached cell grids, so the trace builds them
    half_here = args.half and args.format != "openvino"  # OpenVINO compresses float32 weights itself
    model = detector.model.half() if half_here else detector.model
    example = _example_input(args, detector.stride, device)
    example = example.half() if half_here else example
    job = ExportJob(
        model,
        example,
        detector.names,
        detector.stride,
        args.opset,
        args.dynamic,
        args.half,
        args.simplify,
        args.nms,
        args.int8,
        args.data,
        dict(detector.model.yaml),
    )
    path = Path(args.output) if args.output else output_path(args.weights, args.format, args.int8)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FORMATS[args.format].write(job, path)


def _size_mb(path: Path) -> float:
    """Size of a file, or of every file under a folder, in MB."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export`` with command-line arguments.

    Returns:
        The exit status: 0 on success, 2 on bad input (weights, sizes, device, options, a missing optional package)
        with a one-line ``error: ...``.
    """
    args = build_parser().parse_args(argv)
    formats = list(dict.fromkeys(args.include or [args.format]))
    if len(formats) > 1 and args.output:
        print("error: --output names one file: give one format with it, or leave --output out", file=sys.stderr)
        return 2
    for export_format in formats:
        args.format = export_format
        try:
            path = export(args)
        except (WeightsError, ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"exported {args.weights} to {path} ({args.format}, {_size_mb(path):.1f} MB)")
        if args.format == "coreml" and sys.platform != "darwin":
            print("note: CoreML models run on macOS/iOS only; this file was checked structurally, not run")
    return 0
