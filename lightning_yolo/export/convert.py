"""``convert``: turn an official YOLOv5 ``.pt`` checkpoint into lightning_yolo's own weights file.

The official file is imported through the restricted unpickler (no pickled code runs); the output holds only plain
values and tensors, so it loads with ``torch.load(..., weights_only=True)``.

Example::

    python -m lightning_yolo convert --weights yolov5n.pt --output yolov5n_lightning.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_yolo.models.weights import WeightsError, count_parameters, load_weights, save_weights

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning_yolo convert",
        description="Convert an official YOLOv5 .pt checkpoint into a lightning_yolo weights file.",
    )
    parser.add_argument("--weights", type=Path, required=True, help="official YOLOv5 .pt file (e.g. yolov5n.pt)")
    parser.add_argument(
        "--output", type=Path, default=None, help="weights file to write (default: <weights stem>_lightning.pt)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the converter.

    Args:
        argv: command-line arguments after ``convert``; ``None`` reads ``sys.argv[1:]``.

    Returns:
        Exit status: 0 on success, 1 when the input cannot be converted (the reason goes to stderr).
    """
    args = _parser().parse_args(argv)
    output = args.output or args.weights.with_name(f"{args.weights.stem}_lightning.pt")
    if output.resolve() == args.weights.resolve():
        print(f"error: --output {output} would overwrite the input file", file=sys.stderr)
        return 1
    try:
        weights = load_weights(args.weights)
        save_weights(output, weights.yaml, weights.state_dict, weights.names, weights.stride)
    except (WeightsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stride = ", ".join(f"{s:g}" for s in weights.stride)
    print(f"converted {args.weights} -> {output}")
    print(f"  parameters: {count_parameters(weights.state_dict):,}")
    print(f"  tensors:    {len(weights.state_dict)}")
    print(f"  classes:    {len(weights.names)} names")
    print(f"  stride:     [{stride}]")
    return 0
