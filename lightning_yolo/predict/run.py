"""``predict``: detect objects in images, folders, glob patterns, ``.txt`` lists and videos, and save the results.

A run folder (``<project>/<name>``, numbered like training runs) receives the annotated pictures and videos,
``labels/*.txt`` (``--save-txt``), ``crops/<class>/`` (``--save-crop``) and ``predictions.json`` (COCO style).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightning_yolo.checkpoints.runs import new_run_dir
from lightning_yolo.models.weights import WeightsError
from lightning_yolo.predict.predictor import Detector, Predictor, PredictSettings, load_detector, parse_device
from lightning_yolo.predict.sources import Frame, FrameReader, SourceError, resolve_sources
from lightning_yolo.predict.writers import CocoCollector, VideoSink, annotate, save_crops, write_image, write_txt

__all__ = ["PredictionRun", "build_parser", "main"]

LOGGER = logging.getLogger("lightning_yolo")


def build_parser() -> argparse.ArgumentParser:
    """The ``predict`` command line (``detect.py``'s options and defaults)."""
    p = argparse.ArgumentParser(prog="lightning_yolo predict", description=__doc__)
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument("--source", required=True, help="image, video, folder, glob pattern or .txt list of files")
    p.add_argument("--imgsz", type=int, default=640, help="inference size in pixels (longest side)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="most detections per picture")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    p.add_argument("--augment", action="store_true", help="test-time augmentation (flips and scales)")
    p.add_argument("--batch-size", type=int, default=8, help="pictures per forward pass")
    p.add_argument("--save-txt", action="store_true", help="save YOLO labels to labels/*.txt")
    p.add_argument("--save-conf", action="store_true", help="add the confidence to each --save-txt line")
    p.add_argument("--save-crop", action="store_true", help="save each detection's crop to crops/<class>/")
    p.add_argument("--nosave", action="store_true", help="do not save annotated pictures and videos")
    p.add_argument("--project", default="runs/predict", help="folder holding the run folders")
    p.add_argument("--name", default="exp", help="run folder name (numbered when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="reuse an existing run folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or a bare GPU index such as 0")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.imgsz <= 0 or args.max_det <= 0 or args.batch_size <= 0:
        raise ValueError("--imgsz, --max-det and --batch-size must be positive")
    if not (0 <= args.conf <= 1 and 0 <= args.iou <= 1):
        raise ValueError(f"--conf {args.conf} and --iou {args.iou} must lie in [0, 1]")


@dataclass
class PredictionRun:
    """Saves what one run predicts, picture by picture, and counts it.

    Attributes:
        save_dir: the run folder.
        names: class names.
        args: the parsed command line.
        pictures: pictures predicted on (video frames included); detections: boxes kept over all of them.
    """

    save_dir: Path
    names: list[str]
    args: argparse.Namespace
    pictures: int = 0
    detections: int = 0
    coco: CocoCollector = field(init=False)
    videos: VideoSink = field(init=False)

    def __post_init__(self) -> None:
        self.coco = CocoCollector(self.names)
        self.videos = VideoSink(self.save_dir)
        (self.save_dir / "labels" if self.args.save_txt else self.save_dir).mkdir(parents=True, exist_ok=True)

    def save(self, frame: Frame, det: torch.Tensor) -> None:
        """Write every requested output for one picture."""
        stem = frame.path.stem + (f"_{frame.frame}" if frame.is_video else "")
        self.pictures += 1
        self.detections += len(det)
        self.coco.add(stem, det)
        if self.args.save_txt:
            write_txt(self.save_dir / "labels" / f"{stem}.txt", det, frame.image.shape, self.args.save_conf)
        if self.args.save_crop:
            save_crops(self.save_dir / "crops", stem, frame.image, det, self.names)
        if not self.args.nosave:
            drawn = annotate(frame.image, det, self.names)
            if frame.is_video:
                self.videos.write(frame.path, drawn, frame.fps)
            else:
                write_image(self.save_dir / frame.path.name, drawn)
        LOGGER.info("%s: %s", stem, _describe(det, self.names))

    def finish(self) -> None:
        """Close the videos and write ``predictions.json``."""
        self.videos.close()
        self.coco.save(self.save_dir / "predictions.json")


def _describe(det: torch.Tensor, names: list[str]) -> str:
    """``4 person, 1 bus`` style summary of one picture's detections."""
    if not len(det):
        return "no detections"
    classes, counts = det[:, 5].int().unique(return_counts=True)
    pairs = zip(classes.tolist(), counts.tolist(), strict=True)
    return ", ".join(f"{n} {names[c] if c < len(names) else c}" for c, n in pairs)


def _batches(frames: FrameReader, size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run(args: argparse.Namespace, detector: Detector, reader: FrameReader) -> PredictionRun:
    settings = PredictSettings(args.imgsz, args.conf, args.iou, args.max_det, args.classes, args.agnostic, args.augment)
    predictor = Predictor(detector, settings)
    run = PredictionRun(new_run_dir(args.project, args.name, args.exist_ok), detector.names, args)
    try:
        for batch in _batches(reader, args.batch_size):
            for frame, det in zip(batch, predictor([f.image for f in batch]), strict=True):
                run.save(frame, det)
    finally:
        run.finish()
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``predict`` with command-line arguments.

    Returns:
        The exit status: 0 when any picture was predicted, 2 on bad input (weights, source, settings, or no picture
        readable), with a one-line ``error: ...`` on stderr.
    """
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        paths = resolve_sources(args.source)
        detector = load_detector(args.weights, parse_device(args.device))
        reader = FrameReader(paths)
        run = _run(args, detector, reader)
    except (SourceError, WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    skipped = f", {len(reader.skipped)} skipped" if reader.skipped else ""
    print(f"{run.pictures} pictures, {run.detections} detections{skipped}; results saved to {run.save_dir}")
    for path, reason in reader.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if run.pictures == 0:
        print(f"error: {args.source}: no picture could be read", file=sys.stderr)
        return 2
    return 0
