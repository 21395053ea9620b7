"""``export``: write a fused detection model as ONNX or TorchScript, runnable without lightning_yolo.

The formats, what their files hold and how to read it back are described in :mod:`lightning_yolo.export.formats`.

Example::

    python -m lightning_yolo export --weights yolov5n.pt --format onnx --imgsz 640
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_yolo.export.formats import FORMATS, ExportJob
from lightning_yolo.models.weights import WeightsError
from lightning_yolo.settings import round_to_stride

__all__ = ["build_parser", "main"]


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


def _example_input(args: argparse.Namespace, stride: int, device: torch.device) -> torch.Tensor:
    """A zero input (bs, 3, H, W) with H, W rounded up to multiples of the stride."""
    sizes = args.imgsz * 2 if len(args.imgsz) == 1 else args.imgsz
    if len(sizes) != 2 or min(sizes) <= 0 or args.batch_size <= 0:
        raise ValueError(f"--imgsz {args.imgsz}: give one or two positive sizes; --batch-size must be positive")
    h, w = (round_to_stride(s, stride) for s in sizes)
    return torch.zeros(args.batch_size, 3, h, w, device=device)


def _export(args: argparse.Namespace) -> Path:
    # Inference code (torchvision, OpenCV) is imported only when exporting, not with this package.
    from lightning_yolo.predict.predictor import load_detector, parse_device

    device = parse_device(args.device)
    if args.half and device.type != "cuda":
        raise ValueError("--half needs a CUDA device (--device 0); float16 is not supported on CPU")
    detector = load_detector(args.weights, device)  # fresh: no cached cell grids, so the trace builds them
    model = detector.model.half() if args.half else detector.model
    example = _example_input(args, detector.stride, device)
    example = example.half() if args.half else example
    export_format = FORMATS[args.format]
    path = Path(args.output) if args.output else Path(args.weights).with_suffix(export_format.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_format.write(
        ExportJob(model, example, detector.names, detector.stride, args.opset, args.dynamic), path
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export`` with command-line arguments.

    Returns:
        The exit status: 0 on success, 2 on bad input (weights, sizes, device) with a one-line ``error: ...``.
    """
    args = build_parser().parse_args(argv)
    try:
        path = _export(args)
    except (WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = path.stat().st_size / 1e6
    print(f"exported {args.weights} to {path} ({args.format}, {size:.1f} MB)")
    return 0
