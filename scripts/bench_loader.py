"""Training data loader throughput: lightning_yolo's ``YOLODataModule`` beside YOLOv5's ``create_dataloader``.

Both sides load the same copy of a YOLOv5-format dataset with the training pipeline (mosaic, random perspective,
HSV, flips; ``hyp.scratch-low`` values), 640 px, batch 16, no image cache, and report images per second over a
fixed number of batches after a warm-up. One invocation measures one side; the driver (``--side both``) runs every
side and worker count in a fresh process with the right interpreter, alternating, and prints the medians.

    # both sides, workers 0 and 2, three rounds (see scripts/README.md for the YOLOv5 checkout and venv)
    .venv/bin/python scripts/bench_loader.py --side both --yolov5 /tmp/yolov5 --yolov5-python /tmp/yv5venv/bin/python

    # one side, one setting (prints one ``RESULT {json}`` line)
    .venv/bin/python scripts/bench_loader.py --side ours --workers 2
    /tmp/yv5venv/bin/python scripts/bench_loader.py --side yolov5 --yolov5 /tmp/yolov5 --workers 2

This file imports neither lightning_yolo nor YOLOv5 at module level, so either venv can run it; ``bench_train.py``
reuses its dataset preparation and driver helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

SOURCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128" / "coco128.yaml"
WORK_DIR = Path("/tmp/lightning_yolo_bench")
RESULT_PREFIX = "RESULT "

SCRATCH_LOW_AUGMENT: dict[str, float] = {
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "flipud": 0.0,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "mixup": 0.0,
    "copy_paste": 0.0,
}
"""YOLOv5's ``data/hyps/hyp.scratch-low.yaml`` augmentation values, given to both sides explicitly."""


# ---------------------------------------------------------------------------------------------------- dataset
def prepare_dataset(source_yaml: Path, dest: Path, repeat: int) -> Path:
    """Copy a YOLOv5 dataset (its ``train`` image folder) ``repeat`` times into ``dest``; return the new yaml.

    Both sides read this writable copy: YOLOv5 writes its ``labels.cache`` beside the labels, and a larger
    epoch (``repeat`` copies under new names) keeps epoch boundaries from dominating short measurements.
    The copy is reused when its yaml already exists.
    """
    data_yaml = dest / "data.yaml"
    if data_yaml.is_file():
        return data_yaml
    config = yaml.safe_load(source_yaml.read_text())
    root = (source_yaml.parent / str(config.get("path") or ".")).resolve()
    images = root / config["train"]
    labels = Path(str(images).replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"))
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for copy in range(repeat):
        _copy_split(images, labels, tmp / "images" / "train", tmp / "labels" / "train", f"_r{copy}" if copy else "")
    names = config["names"]
    out = {"path": str(dest), "train": "images/train", "val": "images/train", "nc": len(names), "names": names}
    (tmp / "data.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    tmp.rename(dest)
    return data_yaml


def _copy_split(images: Path, labels: Path, out_images: Path, out_labels: Path, suffix: str) -> None:
    """Copy every image (and its label file when present) with ``suffix`` added to the file stem."""
    out_images.mkdir(parents=True, exist_ok=True)
    out_labels.mkdir(parents=True, exist_ok=True)
    for image in sorted(p for p in images.iterdir() if p.is_file()):
        shutil.copyfile(image, out_images / f"{image.stem}{suffix}{image.suffix}")
        label = labels / f"{image.stem}.txt"
        if label.is_file():
            shutil.copyfile(label, out_labels / f"{image.stem}{suffix}.txt")


# ---------------------------------------------------------------------------------------------------- timing
def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (default: this one) and its live descendants.

    Counts loader workers, which ``time.process_time`` misses. Reads Linux's ``/proc``; NaN elsewhere. Less
    sensitive than wall time to other users' load on a shared machine (but counts threads' spin-waiting).
    """
    pids, total = [pid or os.getpid()], 0.0
    tick = os.sysconf("SC_CLK_TCK")
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
            for children in Path(f"/proc/{current}/task").glob("*/children"):
                pids.extend(int(c) for c in children.read_text().split())
        except (OSError, IndexError, ValueError):
            if current == (pid or os.getpid()):
                return float("nan")
    return total


def time_batches(
    epochs: Callable[[int], Iterable[Any]], batch_size: Callable[[Any], int], warmup: int, batches: int
) -> dict[str, float]:
    """Iterate epochs until ``warmup + batches`` batches are drawn; time the last ``batches``.

    Args:
        epochs: ``epochs(e)`` returns a fresh iterator over epoch ``e`` of the loader.
        batch_size: Number of images in a batch.
        warmup: Batches drawn before the clock starts (worker start-up, first decodes, page cache).
        batches: Batches timed.

    Returns:
        ``{"images_per_s", "batches_per_s", "seconds", "images", "cpu_ms_per_image"}`` (CPU time of this
        process and its workers).
    """
    drawn, images, epoch = 0, 0, 0
    start, cpu_start = time.perf_counter(), tree_cpu_seconds()
    while drawn < warmup + batches:
        for batch in epochs(epoch):
            drawn += 1
            if drawn == warmup:
                start, cpu_start = time.perf_counter(), tree_cpu_seconds()
            elif drawn > warmup:
                images += batch_size(batch)
            if drawn == warmup + batches:
                break
        epoch += 1
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds() - cpu_start
    return {
        "images_per_s": images / seconds,
        "batches_per_s": batches / seconds,
        "seconds": seconds,
        "images": images,
        "cpu_ms_per_image": 1000 * cpu / images,
    }


def environment_facts() -> dict[str, Any]:
    """Thread settings and load that change CPU timings."""
    import cv2
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "cv2_threads": cv2.getNumThreads(),
        "loadavg": os.getloadavg()[0],
        "python": sys.executable,
    }


# ---------------------------------------------------------------------------------------------------- sides
def measure_ours(args: argparse.Namespace, data_yaml: Path) -> dict[str, float]:
    """Images/s of lightning_yolo's training loader."""
    from lightning_yolo.data.datamodule import YOLODataModule

    dm = YOLODataModule(
        data=str(data_yaml),
        imgsz=args.imgsz,
        batch_size=args.batch_size,
        workers=args.workers,
        albumentations=args.albumentations,
        fast_decode=not args.full_decode,
        fast_warp=not args.exact_warp,
        **SCRATCH_LOW_AUGMENT,
    )
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()

    def epochs(epoch: int) -> Iterable[Any]:
        dm.set_epoch(epoch)
        return iter(loader)

    return time_batches(epochs, lambda b: int(b["img"].shape[0]), args.warmup, args.batches)


def measure_yolov5(args: argparse.Namespace, data_yaml: Path) -> dict[str, float]:
    """Images/s of YOLOv5's ``create_dataloader`` (training settings of its ``train.py``) from ``--yolov5``."""
    checkout = str(Path(args.yolov5).resolve())
    sys.path.insert(0, checkout)  # YOLOv5 is not a package: its modules import each other as top-level names
    from utils.dataloaders import create_dataloader

    hyp = yaml.safe_load((Path(checkout) / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    hyp.update(SCRATCH_LOW_AUGMENT)
    config = yaml.safe_load(data_yaml.read_text())
    train_path = str(Path(config["path"]) / config["train"])
    loader, _ = create_dataloader(
        train_path,
        args.imgsz,
        args.batch_size,
        32,
        hyp=hyp,
        augment=True,
        cache=False,
        rect=False,
        rank=-1,
        workers=args.workers,
        prefix="train: ",
        shuffle=True,
        seed=0,
    )
    return time_batches(lambda _e: iter(loader), lambda b: int(b[0].shape[0]), args.warmup, args.batches)


def run_side(args: argparse.Namespace) -> None:
    """Measure one side and print one ``RESULT {json}`` line."""
    data_yaml = prepare_dataset(Path(args.data), Path(args.work_dir) / f"data_x{args.repeat}", args.repeat)
    measure = measure_ours if args.side == "ours" else measure_yolov5
    result = measure(args, data_yaml)
    result.update(side=args.side, workers=args.workers, **environment_facts())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------- driver
def side_command(side: str, script: Path, python: str, forwarded: Sequence[str]) -> list[str]:
    """The command line measuring ``side`` with ``script`` under ``python``."""
    return [python, str(script), "--side", side, *forwarded]


def bench_env(work_dir: Path) -> dict[str, str]:
    """Environment of measurement subprocesses: no W&B, no YOLOv5 auto-install, a private lightning_yolo cache."""
    env = dict(os.environ)
    env.update(WANDB_MODE="disabled", YOLOv5_AUTOINSTALL="false", PYTHONUNBUFFERED="1")
    env.setdefault("LIGHTNING_YOLO_CACHE", str(work_dir / "cache"))
    return env


def run_measurement(command: list[str], env: dict[str, str], log_file: Path) -> dict[str, Any]:
    """Run one measurement process, keep its output in ``log_file`` and return its ``RESULT`` record."""
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(command)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"no result from {' '.join(command)} (exit {proc.returncode}); see {log_file}")


def median_table(rows: list[dict[str, Any]], group: str, value: str, higher_is_better: bool = True) -> str:
    """Markdown table of the median ``value`` per ``group`` for each side and how many times faster ours is.

    ``speed-up`` is ours / yolov5 for rates (``higher_is_better``) and yolov5 / ours for costs, so above 1 always
    means lightning_yolo is faster.
    """
    header = f"| {group} | ours {value} | yolov5 {value} | speed-up ours vs yolov5 | every run (ours; yolov5) |"
    lines = [header, "| --- | --- | --- | --- | --- |"]
    for g in sorted({r[group] for r in rows}, key=str):
        by_side = {s: [r[value] for r in rows if r[group] == g and r["side"] == s] for s in ("ours", "yolov5")}
        med = {s: statistics.median(v) if v else float("nan") for s, v in by_side.items()}
        ratio = med["ours"] / med["yolov5"] if higher_is_better else med["yolov5"] / med["ours"]
        each = "; ".join(", ".join(f"{v:.1f}" for v in by_side[s]) for s in by_side)
        lines.append(f"| {g} | {med['ours']:.2f} | {med['yolov5']:.2f} | {ratio:.2f} | {each} |")
    return "\n".join(lines)


def print_summary(rows: list[dict[str, Any]], group: str) -> None:
    """The wall-clock and CPU-time tables and the load range seen during the runs."""
    print(median_table(rows, group, "images_per_s"))
    print()
    print(median_table(rows, group, "cpu_ms_per_image", higher_is_better=False))
    loads = [r["loadavg"] for r in rows]
    print(f"\n1-minute load average at the end of each run: {min(loads):.2f} to {max(loads):.2f}", flush=True)


def drive(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Alternate sides and worker counts for ``--runs`` rounds, then print the per-setting medians."""
    script, work_dir = Path(__file__).resolve(), Path(args.work_dir)
    prepare_dataset(Path(args.data), work_dir / f"data_x{args.repeat}", args.repeat)
    env, rows = bench_env(work_dir), []
    pythons = {"ours": args.ours_python, "yolov5": args.yolov5_python}
    for round_ in range(args.runs):
        for workers in args.worker_counts:
            for side in ("ours", "yolov5") if round_ % 2 == 0 else ("yolov5", "ours"):
                extra = [*forwarded, "--workers", str(workers), "--yolov5", args.yolov5]
                command = side_command(side, script, pythons[side], extra)
                log_file = work_dir / "logs" / f"loader_{side}_w{workers}_r{round_}.log"
                row = run_measurement(command, env, log_file)
                rows.append(row)
                print(
                    f"round {round_} {side:6s} workers={workers}: {row['images_per_s']:.1f} img/s, "
                    f"{row['cpu_ms_per_image']:.1f} CPU ms/img (load {row['loadavg']:.2f}, "
                    f"torch threads {row['torch_threads']}, cv2 threads {row['cv2_threads']})",
                    flush=True,
                )
    print_summary(rows, "workers")


# ---------------------------------------------------------------------------------------------------- CLI
def add_shared_arguments(p: argparse.ArgumentParser, imgsz: int) -> None:
    """The options both benchmark scripts take: sides, interpreters, data, size, batch, rounds, albumentations."""
    p.add_argument("--side", choices=("ours", "yolov5", "both"), default="both", help="side to measure")
    p.add_argument("--yolov5", default="/tmp/yolov5", help="YOLOv5 checkout (work tree) for --side yolov5")
    p.add_argument("--yolov5-python", default="/tmp/yv5venv/bin/python", help="interpreter of the YOLOv5 side")
    p.add_argument("--ours-python", default=sys.executable, help="interpreter of the lightning_yolo side")
    p.add_argument("--data", default=str(SOURCE_DATA), help="source dataset yaml (copied, never written)")
    p.add_argument("--work-dir", default=str(WORK_DIR), help="dataset copies, caches, runs and logs")
    p.add_argument("--repeat", type=int, default=4, help="copies of the dataset's images in the benchmark set")
    p.add_argument("--runs", type=int, default=3, help="rounds of the driver (median reported)")
    p.add_argument("--imgsz", type=int, default=imgsz)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--albumentations",
        action="store_true",
        help="lightning_yolo: also apply the albumentations "
        "extras (YOLOv5 applies them only when albumentations is installed, which its requirements omit)",
    )
    p.add_argument(
        "--full-decode",
        action="store_true",
        help="lightning_yolo: decode every JPEG in full as YOLOv5 does (data.fast_decode false); by default JPEGs "
        "2x or more larger than imgsz are decoded at reduced scale",
    )
    p.add_argument(
        "--exact-warp",
        action="store_true",
        help="lightning_yolo: warp every mosaic canvas with warpAffine as YOLOv5 does (data.fast_warp false); by "
        "default scale + translation warps run as a crop and a resize and unseen mosaic tiles are not decoded",
    )


def shared_forwarded(args: argparse.Namespace) -> list[str]:
    """The shared options a driver passes on to every measurement process."""
    return [
        *("--data", args.data, "--work-dir", args.work_dir, "--repeat", str(args.repeat)),
        *("--imgsz", str(args.imgsz), "--batch-size", str(args.batch_size)),
        *(["--albumentations"] if args.albumentations else []),
        *(["--full-decode"] if args.full_decode else []),
        *(["--exact-warp"] if args.exact_warp else []),
    ]


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; also return the settings a driver forwards to every measurement."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(p, imgsz=640)
    p.add_argument("--workers", type=int, default=0, help="loader workers (one side)")
    p.add_argument("--worker-counts", type=int, nargs="+", default=[0, 2], help="worker counts (driver)")
    p.add_argument("--warmup", type=int, default=5, help="batches before timing")
    p.add_argument("--batches", type=int, default=30, help="batches timed")
    args = p.parse_args(argv)
    forwarded = [*shared_forwarded(args), "--warmup", str(args.warmup), "--batches", str(args.batches)]
    return args, forwarded


def main(argv: Sequence[str] | None = None) -> None:
    """Measure one side, or drive both."""
    args, forwarded = parse_args(argv)
    if args.side == "both":
        drive(args, forwarded)
    else:
        run_side(args)


if __name__ == "__main__":
    main()
