"""``predict``: detect objects in images, folders, glob patterns, ``.txt`` lists, videos, webcams and network
streams, and save the results.

A run folder (``<project>/<name>``, numbered like training runs) receives the annotated pictures and videos,
``labels/*.txt`` (``--save-txt``), ``crops/<class>/`` (``--save-crop``), ``predictions.csv`` (``--save-csv``) and
``predictions.json`` (COCO style). Options keep ``detect.py``'s names and defaults; each dashed option also takes
its underscore spelling (``--line_thickness``), and ``--conf``, ``--iou`` and ``--agnostic`` also take
``detect.py``'s ``--conf-thres``, ``--iou-thres`` and ``--agnostic-nms``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightning_yolo.checkpoints.runs import new_run_dir
from lightning_yolo.models.weights import WeightsError
from lightning_yolo.predict.predictor import Detector, Predictor, PredictSettings, load_detector, parse_device
from lightning_yolo.predict.sources import Frame, FrameReader, SourceError, resolve_sources
from lightning_yolo.predict.streams import StreamReader, is_stream
from lightning_yolo.predict.writers import (
    CocoCollector,
    CsvWriter,
    VideoSink,
    annotate,
    save_crops,
    write_image,
    write_txt,
)

__all__ = ["PredictionRun", "build_parser", "main"]

LOGGER = logging.getLogger("lightning_yolo")

INTERRUPTED = 130
"""Exit status after Ctrl-C (the shell's 128 + SIGINT); what was predicted until then is saved."""


def _option(p: argparse.ArgumentParser, name: str, *aliases: str, **kwargs: Any) -> None:
    """Add ``--some-name`` with its ``--some_name`` spelling and any ``aliases``."""
    underscored = "--" + name[2:].replace("-", "_")
    names = [name, *([underscored] if underscored != name else []), *aliases]
    p.add_argument(*names, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``predict`` command line (``detect.py``'s options and defaults)."""
    p = argparse.ArgumentParser(prog="lightning_yolo predict", description=__doc__)
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument(
        "--source",
        required=True,
        help="image, video, folder, glob pattern, .txt list of files, webcam index (0) or rtsp/rtmp/http(s) URL",
    )
    p.add_argument(
        "--imgsz",
        "--img",
        "--img-size",
        "--img_size",
        type=int,
        nargs="+",
        default=[640],
        metavar="SIZE",
        help="inference size: one value (640) or height and width (480 640)",
    )
    _option(p, "--conf", "--conf-thres", "--conf_thres", type=float, default=0.25, help="confidence threshold")
    _option(p, "--iou", "--iou-thres", "--iou_thres", type=float, default=0.45, help="NMS IoU threshold")
    _option(p, "--max-det", type=int, default=1000, help="most detections per picture")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    _option(p, "--agnostic", "--agnostic-nms", "--agnostic_nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--augment", action="store_true", help="test-time augmentation (flips and scales)")
    _option(p, "--batch-size", type=int, default=8, help="pictures per forward pass")
    _option(p, "--half", action="store_true", help="float16 inference (needs a CUDA device)")
    _option(p, "--vid-stride", type=int, default=1, help="predict every n-th video or stream frame")
    _option(p, "--save-txt", action="store_true", help="save YOLO labels to labels/*.txt")
    _option(p, "--save-conf", action="store_true", help="add the confidence to each --save-txt line")
    _option(p, "--save-csv", action="store_true", help="save predictions.csv: Image Name, Prediction, Confidence")
    _option(p, "--save-crop", action="store_true", help="save each detection's crop to crops/<class>/")
    p.add_argument("--nosave", action="store_true", help="do not save annotated pictures and videos")
    _option(p, "--line-thickness", type=int, default=3, help="box line width in pixels (0: from the picture size)")
    _option(p, "--hide-labels", action="store_true", help="draw boxes without label tags")
    _option(p, "--hide-conf", action="store_true", help="label tags without the confidence")
    p.add_argument("--project", default="runs/predict", help="folder holding the run folders")
    p.add_argument("--name", default="exp", help="run folder name (numbered when it exists)")
    _option(p, "--exist-ok", action="store_true", help="reuse an existing run folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 or a bare GPU index such as 0")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if len(args.imgsz) > 2 or min(args.imgsz) <= 0:
        raise ValueError(f"--imgsz {' '.join(map(str, args.imgsz))}: give one or two positive sizes (height width)")
    if args.max_det <= 0 or args.batch_size <= 0 or args.vid_stride <= 0:
        raise ValueError("--max-det, --batch-size and --vid-stride must be positive")
    if args.line_thickness < 0:
        raise ValueError(f"--line-thickness {args.line_thickness} must be 0 (from the picture size) or more")
    if not (0 <= args.conf <= 1 and 0 <= args.iou <= 1):
        raise ValueError(f"--conf {args.conf} and --iou {args.iou} must lie in [0, 1]")


def _device(args: argparse.Namespace) -> torch.device:
    device = parse_device(args.device)
    if args.half and device.type != "cuda":
        raise ValueError(f"--half needs a CUDA device (e.g. --device 0), not --device {args.device}")
    return device


def _open_reader(args: argparse.Namespace) -> FrameReader | StreamReader:
    """The frames of ``--source``; a stream is opened here, so a dead one fails before the model loads."""
    if is_stream(args.source):
        # FFmpeg would print its own lines ("Connection refused") next to ours; a user's setting is kept.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        return StreamReader(args.source, args.vid_stride)
    return FrameReader(resolve_sources(args.source), args.vid_stride)


@dataclass
class PredictionRun:
    """Saves what one run predicts, picture by picture, and counts it.

    Attributes:
        save_dir: the run folder.
        names: class names.
        args: the parsed command line.
        pictures: pictures predicted on (video frames included); detections: boxes kept over all of them.
        interrupted: the run was stopped with Ctrl-C.
    """

    save_dir: Path
    names: list[str]
    args: argparse.Namespace
    pictures: int = 0
    detections: int = 0
    interrupted: bool = False
    coco: CocoCollector = field(init=False)
    videos: VideoSink = field(init=False)
    csv: CsvWriter | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.coco = CocoCollector(self.names)
        self.videos = VideoSink(self.save_dir)
        (self.save_dir / "labels" if self.args.save_txt else self.save_dir).mkdir(parents=True, exist_ok=True)
        if self.args.save_csv:
            self.csv = CsvWriter(self.save_dir / "predictions.csv", self.names)

    def save(self, frame: Frame, det: torch.Tensor) -> None:
        """Write every requested output for one picture."""
        stem = frame.path.stem + (f"_{frame.frame}" if frame.is_video else "")
        self.pictures += 1
        self.detections += len(det)
        self.coco.add(stem, det)
        if self.csv is not None:
            self.csv.add(frame.path.name + (f":{frame.frame}" if frame.is_video else ""), det)
        if self.args.save_txt:
            write_txt(self.save_dir / "labels" / f"{stem}.txt", det, frame.image.shape, self.args.save_conf)
        if self.args.save_crop:
            save_crops(self.save_dir / "crops", stem, frame.image, det, self.names)
        if not self.args.nosave:
            a = self.args
            drawn = annotate(frame.image, det, self.names, a.line_thickness, a.hide_labels, a.hide_conf)
            if frame.is_video:
                self.videos.write(frame.path, drawn, frame.fps)
            else:
                write_image(self.save_dir / frame.path.name, drawn)
        LOGGER.info("%s: %s", stem, _describe(det, self.names))

    def finish(self) -> None:
        """Close the videos and ``predictions.csv``, and write ``predictions.json``."""
        self.videos.close()
        if self.csv is not None:
            self.csv.close()
        self.coco.save(self.save_dir / "predictions.json")


def _describe(det: torch.Tensor, names: list[str]) -> str:
    """``4 person, 1 bus`` style summary of one picture's detections."""
    if not len(det):
        return "no detections"
    classes, counts = det[:, 5].int().unique(return_counts=True)
    pairs = zip(classes.tolist(), counts.tolist(), strict=True)
    return ", ".join(f"{n} {names[c] if c < len(names) else c}" for c, n in pairs)


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run(args: argparse.Namespace, detector: Detector, reader: FrameReader | StreamReader) -> PredictionRun:
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else (args.imgsz[0], args.imgsz[1])
    settings = PredictSettings(imgsz, args.conf, args.iou, args.max_det, args.classes, args.agnostic, args.augment)
    predictor = Predictor(detector, settings)
    run = PredictionRun(new_run_dir(args.project, args.name, args.exist_ok), detector.names, args)
    live = isinstance(reader, StreamReader) and not reader.frames
    try:
        for batch in _batches(reader, 1 if live else args.batch_size):  # a live frame is not kept waiting
            for frame, det in zip(batch, predictor([f.image for f in batch]), strict=True):
                run.save(frame, det)
    except KeyboardInterrupt:  # how a live stream is stopped: keep what was predicted
        run.interrupted = True
    finally:
        run.finish()
    return run


def _report(args: argparse.Namespace, run: PredictionRun, reader: FrameReader | StreamReader) -> int:
    """Print the summary and the skipped files; returns the exit status."""
    skipped = f", {len(reader.skipped)} skipped" if reader.skipped else ""
    reconnects = getattr(reader, "reconnects", 0)
    skipped += f", {reconnects} reconnects" if reconnects else ""
    print(f"{run.pictures} pictures, {run.detections} detections{skipped}; results saved to {run.save_dir}")
    for path, reason in reader.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if run.interrupted:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    if run.pictures == 0:
        print(f"error: {args.source}: no picture could be read", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``predict`` with command-line arguments.

    Returns:
        The exit status: 0 when any picture was predicted; 2 on bad input (weights, source, settings, a stream
        that cannot be opened or is gone, or no picture readable), with a one-line ``error: ...`` on stderr;
        130 after Ctrl-C, with what was predicted until then saved.
    """
    args = build_parser().parse_args(argv)
    reader: FrameReader | StreamReader | None = None
    try:
        _check_args(args)
        device = _device(args)
        reader = _open_reader(args)
        detector = load_detector(args.weights, device, half=args.half)
        run = _run(args, detector, reader)
    except (SourceError, WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if isinstance(reader, StreamReader):
            reader.close()
    return _report(args, run, reader)
