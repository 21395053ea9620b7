"""``serve``: an HTTP endpoint for a detection model on LitServe.

``POST /predict`` with an image file as the body, as the form field ``image``, or as JSON ``{"image": base64}``
answers ``{"width", "height", "detections": [{"class", "name", "confidence", "box": [x1, y1, x2, y2]}]}`` in the
picture's pixels, the same detections as ``predict`` on the same file; ``GET /health`` answers ``ok`` once the model
is loaded. Concurrent requests are batched (``--max-batch-size``, ``--batch-timeout``). Bad requests get a 4xx with
``{"detail": reason}``: 400 malformed (empty body, wrong field, bad base64), 413 too large, 422 not a usable image.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lightning_yolo.models.weights import WeightsError
from lightning_yolo.predict.predictor import PredictSettings, load_detector

__all__ = ["INSTALL_HINT", "build_parser", "main"]

INSTALL_HINT = "error: serve needs LitServe: pip install -e '.[serve]'"

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # noqa: S104 - what LitServe accepts; binding all interfaces is opt-in


def build_parser() -> argparse.ArgumentParser:
    """The ``serve`` command line (``predict``'s inference options, LitServe's serving options)."""
    p = argparse.ArgumentParser(prog="lightning_yolo serve", description=__doc__)
    p.add_argument("--weights", required=True, help="official YOLOv5 .pt, converted weights file or training .ckpt")
    p.add_argument("--host", default="127.0.0.1", choices=HOSTS, help="address to listen on (0.0.0.0: every one)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (1024-65535)")
    p.add_argument(
        "--imgsz",
        "--img",
        "--img-size",
        type=int,
        nargs="+",
        default=[640],
        metavar="SIZE",
        help="inference size: one value (640) or height and width (480 640)",
    )
    p.add_argument("--conf", "--conf-thres", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", "--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", "--max_det", type=int, default=1000, help="most detections per picture")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu, or cuda: every visible GPU")
    p.add_argument("--max-batch-size", type=int, default=8, help="most concurrent requests in one forward pass")
    p.add_argument("--batch-timeout", type=float, default=0.01, help="seconds to wait for a batch to fill")
    p.add_argument("--workers-per-device", type=int, default=1, help="inference processes per device")
    p.add_argument("--max-image-mb", type=float, default=20.0, help="largest image accepted, in MiB (413 above)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per worker (0: torch's default)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for its answer")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="server log")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if len(args.imgsz) > 2 or min(args.imgsz) <= 0:
        raise ValueError(f"--imgsz {' '.join(map(str, args.imgsz))}: give one or two positive sizes (height width)")
    if not (0 <= args.conf <= 1 and 0 <= args.iou <= 1):
        raise ValueError(f"--conf {args.conf} and --iou {args.iou} must lie in [0, 1]")
    if args.threads < 0:
        raise ValueError(f"--threads {args.threads} must be 0 (torch's default) or more")
    if min(args.max_det, args.max_batch_size, args.workers_per_device) <= 0:
        raise ValueError("--max-det, --max-batch-size and --workers-per-device must be positive")
    if args.batch_timeout < 0 or args.max_image_mb <= 0 or args.timeout <= 0:
        raise ValueError("--batch-timeout must be 0 or more; --max-image-mb and --timeout positive")
    if not 1024 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} must lie in 1024-65535")


def _stop_on_sigterm(main_pid: int) -> Callable[[int, Any], None]:
    """A SIGTERM handler giving the serving process LitServe's clean Ctrl-C shutdown of its workers. The server
    processes LitServe forks inherit it: they stop the default way, as they would without it."""

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() == main_pid:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``serve`` with command-line arguments until stopped (Ctrl-C or SIGTERM).

    Returns:
        The exit status: 0 after a clean stop; 2 on bad input (settings, weights, LitServe not installed), with a
        one-line ``error: ...`` on stderr.
    """
    args = build_parser().parse_args(argv)
    try:
        import litserve  # noqa: F401 - an optional extra
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    from lightning_yolo.serve.server import build_server

    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else (args.imgsz[0], args.imgsz[1])
    settings = PredictSettings(imgsz, args.conf, args.iou, args.max_det)
    try:
        _check_args(args)
        load_detector(args.weights)  # a bad file fails here, in one line, not in every worker
        server = build_server(
            args.weights,
            settings,
            accelerator=args.device,
            max_batch_size=args.max_batch_size,
            batch_timeout=args.batch_timeout,
            workers_per_device=args.workers_per_device,
            max_image_bytes=int(args.max_image_mb * 2**20),
            timeout=args.timeout,
            threads=args.threads,
        )
    except (WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm(os.getpid()))
    try:
        server.run(host=args.host, port=args.port, log_level=args.log_level, generate_client_file=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
