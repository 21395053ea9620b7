"""``benchmark``: export the weights to every format, validate each export, and print YOLOv5's benchmark table.

For each format (PyTorch itself first) the weights are exported into the output folder, validated on the
dataset's ``val`` split at the given size (the ``validate`` command's metrics and rect batches), and measured:
file size, mAP@0.5:0.95 and inference milliseconds per image. ONNX and OpenVINO are exported with dynamic shapes,
so they see the same rect batches as PyTorch; TorchScript, TFLite and engines keep their export size, and larger
inputs are shrunk to fit (:mod:`lightning_yolo.export.backends`). A format that fails shows its error in the
table; the table is also saved as ``benchmark.csv`` in the output folder.

Example::

    python -m lightning_yolo benchmark --weights yolov5n.pt --data coco128.yaml --imgsz 640 --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_yolo.export.formats import FORMATS

__all__ = ["BenchmarkRow", "build_parser", "main"]

FORMAT_NAMES = {
    "pytorch": "PyTorch",
    "torchscript": "TorchScript",
    "onnx": "ONNX",
    "openvino": "OpenVINO",
    "coreml": "CoreML",
    "engine": "TensorRT",
    "saved_model": "TensorFlow SavedModel",
    "tflite": "TensorFlow Lite",
}
DYNAMIC = ("onnx", "openvino")


@dataclass
class BenchmarkRow:
    """One line of the table: a format, its size, its mAP and speed, or the error that stopped it."""

    format: str
    size_mb: float | None = None
    map50_95: float | None = None
    ms_per_image: float | None = None
    error: str = ""

    def cells(self) -> list[str]:
        """The printed cells (``-`` where there is no value)."""
        values = [self.size_mb, self.map50_95, self.ms_per_image]
        formats = ["{:.1f}", "{:.4f}", "{:.2f}"]
        return [self.format] + [f.format(v) if v is not None else "-" for f, v in zip(formats, values, strict=True)]


def build_parser() -> argparse.ArgumentParser:
    """The ``benchmark`` command line."""
    p = argparse.ArgumentParser(prog="lightning_yolo benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument("--data", required=True, help="dataset yaml (its val split is measured)")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="image size")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or a bare GPU index such as 0")
    p.add_argument("--batch-size", type=int, default=1, help="images per validation batch")
    p.add_argument("--workers", type=int, default=2, help="data loader workers")
    choices = ["pytorch", *FORMATS]
    p.add_argument("--formats", nargs="+", choices=choices, default=choices, help="formats to measure")
    p.add_argument("--output", default="runs/benchmark", help="folder for the exports and benchmark.csv")
    return p


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def _export(args: argparse.Namespace, name: str, folder: Path) -> Path:
    """Export the weights to format ``name`` in ``folder``; returns the written path."""
    from lightning_yolo.export.formats import output_path
    from lightning_yolo.export.run import build_parser as export_parser
    from lightning_yolo.export.run import export

    path = output_path(folder / Path(args.weights).name, name)
    argv = ["--weights", str(args.weights), "--format", name, "--imgsz", str(args.imgsz), "--device", args.device]
    argv += ["--output", str(path)] + (["--dynamic"] if name in DYNAMIC else [])
    return export(export_parser().parse_args(argv))


class _InferenceTime:
    """A callback reading the module's inference ms/image before the module resets its timers."""

    def __init__(self) -> None:
        self.ms: float | None = None

    def __call__(self, trainer: Any, module: Any) -> None:
        self.ms = module.speed.per_image_ms()[1]


def _validate(args: argparse.Namespace, weights: Path, stride: int) -> tuple[float, float]:
    """mAP@0.5:0.95 and inference ms/image of ``weights`` on the dataset (the validate command, quietly).

    ``stride`` is the model's largest stride (the same for every export of one model), which sizes the rect batches.
    """
    from pytorch_lightning import Callback, Trainer

    from lightning_yolo.data.datamodule import YOLODataModule
    from lightning_yolo.module import YOLOModule
    from lightning_yolo.predict.predictor import parse_device

    device = parse_device(args.device)
    data = YOLODataModule(
        data=args.data, imgsz=args.imgsz, batch_size=args.batch_size, workers=args.workers, stride=stride
    )
    module = YOLOModule(weights=str(weights), nc=data.nc, names=data.names, imgsz=args.imgsz)
    timer = _InferenceTime()
    probe = type("InferenceTimeProbe", (Callback,), {"on_validation_epoch_end": lambda _, t, m: timer(t, m)})()
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[probe],
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the validate table of every format would drown the benchmark
        trainer.validate(module, datamodule=data, verbose=False)
    return float(module.last_results["map"]), float(timer.ms or 0.0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def measure(args: argparse.Namespace, name: str, folder: Path, stride: int) -> BenchmarkRow:
    """Export and validate one format (``stride``: the source model's); any failure is recorded in the row, never
    raised."""
    row = BenchmarkRow(FORMAT_NAMES[name])
    try:
        path = Path(args.weights) if name == "pytorch" else _export(args, name, folder)
        row.size_mb = _size_mb(path)
        row.map50_95, row.ms_per_image = _validate(args, path, stride)
    except Exception as exc:  # a benchmark reports every format's failure instead of stopping
        row.error = _one_line(exc)
    return row


HEADER = ["Format", "Size (MB)", "mAP50-95", "Inference time (ms/im)", "Error"]
"""YOLOv5's benchmark columns, and the error that stopped a format."""


def format_table(rows: list[BenchmarkRow]) -> str:
    """YOLOv5's benchmark table as aligned text, errors in a last column."""
    lines = [[*r.cells(), r.error] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *lines, strict=True)]
    render = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([render(HEADER), *(render(line) for line in lines)])


def write_csv(rows: list[BenchmarkRow], path: Path) -> None:
    """The table as CSV (empty cells where there is no value)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for r in rows:
            writer.writerow([r.format, *("" if c == "-" else c for c in r.cells()[1:]), r.error])


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``benchmark``; returns 0 when it ran (failed formats are in the table), 2 on bad input."""
    from lightning_yolo.data.config import DatasetError, load_dataset_config
    from lightning_yolo.models.weights import WeightsError
    from lightning_yolo.predict.predictor import load_detector

    args = build_parser().parse_args(argv)
    folder = Path(args.output)
    try:
        if args.imgsz <= 0 or args.batch_size <= 0:
            raise ValueError(f"--imgsz {args.imgsz} and --batch-size {args.batch_size} must be positive")
        load_dataset_config(args.data)
        stride = load_detector(args.weights, "cpu").stride  # also refuses unreadable weights now
        folder.mkdir(parents=True, exist_ok=True)
    except (WeightsError, DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = []
    for name in args.formats:
        start = time.perf_counter()
        rows.append(measure(args, name, folder, stride))
        print(f"{FORMAT_NAMES[name]}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nBenchmarks of {args.weights} on {args.data} at {args.imgsz} ({args.device}):")
    print(format_table(rows))
    write_csv(rows, folder / "benchmark.csv")
    print(f"saved {folder / 'benchmark.csv'}")
    return 0
