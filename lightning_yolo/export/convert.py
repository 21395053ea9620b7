"""``convert``: turn an official YOLOv5 ``.pt`` (or a training ``.ckpt``) into lightning_yolo's weights file.

The input is read through :func:`lightning_yolo.models.weights.load_weights` (an official file with the restricted
unpickler: no pickled code runs; a checkpoint gives its EMA weights); the output holds only plain values and
tensors, so it loads with ``torch.load(..., weights_only=True)``.

Example::

    python -m lightning_yolo convert --weights yolov5n.pt --output yolov5n_lightning.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_yolo.models.weights import WeightsError, count_parameters, load_weights, save_weights

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``convert`` command line."""
    parser = argparse.ArgumentParser(
        prog="lightning_yolo convert",
        description="Convert an official YOLOv5 .pt checkpoint (or a training .ckpt) into a lightning_yolo weights "
        "file.",
    )
    parser.add_argument(
        "--weights", type=Path, required=True, help="official YOLOv5 .pt (e.g. yolov5n.pt) or training .ckpt"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="weights file to write, its folder created if missing (default: <weights stem>_lightning.pt)",
    )
    return parser


def _make_folder(output: Path) -> None:
    """Create the folder of ``output`` with its missing parents.

    Raises:
        ValueError: the folder cannot be created (a parent is a file, no permission, read-only file system).
    """
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # FileExistsError when a parent is a file
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is not a folder" if blocker else exc.strerror or str(exc)
        raise ValueError(f"--output {output}: cannot create the folder {folder}: {reason}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter.

    Args:
        argv: command-line arguments after ``convert``; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 when the input cannot be converted (a one-line ``error: ...`` on stderr).
    """
    args = build_parser().parse_args(argv)
    output = args.output or args.weights.with_name(f"{args.weights.stem}_lightning.pt")
    try:
        if output.resolve() == args.weights.resolve():
            raise ValueError(f"--output {output} would overwrite the input file")
        if output.is_dir():
            raise ValueError(f"--output {output} is a folder; give a file name")
        weights = load_weights(args.weights)
        _make_folder(output)
        try:
            save_weights(output, weights.yaml, weights.state_dict, weights.names, weights.stride)
        except OSError as exc:
            raise ValueError(f"--output {output}: cannot write the file: {exc.strerror or exc}") from None
    except (WeightsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stride = ", ".join(f"{s:g}" for s in weights.stride)
    print(f"converted {args.weights} -> {output}")
    print(f"  parameters: {count_parameters(weights.state_dict):,}")
    print(f"  tensors:    {len(weights.state_dict)}")
    print(f"  classes:    {len(weights.names)} names")
    print(f"  stride:     [{stride}]")
    return 0
