"""COCO-scale dataset handling: lightning_yolo's label scan, cache and loader beside YOLOv5's, on a generated set.

The dataset is synthetic and seeded (``--root`` is written once and reused): ``--train`` + ``--val`` small JPEGs
(default 120,000 + 5,000, COCO's size), 80 classes, about 7.3 boxes per image (as COCO), 1% backgrounds (half
without a label file, half with an empty one), labels written with 6 decimals as COCO's YOLO labels are.

Measured per side, each in a fresh process (``--side ours`` / ``--side yolov5`` prints one ``RESULT {json}``
line; ``--side both`` drives them, alternating, and prints a table):

- ``scan`` (``--what scan``): the train dataset built from nothing (``cold``: the label cache deleted first) and
  from the cache (``warm``), in seconds; the cache file's size; the peak resident memory above what the imports
  took (``ru_maxrss`` after minus the resident set before).
- ``loader`` (``--what loader``): ``--batches`` training batches at ``--imgsz`` (mosaic, hyp.scratch-low) with
  ``--workers`` workers: batches/s after the first ``--warmup``, and the loader workers' private memory (USS, from
  ``/proc/<pid>/smaps_rollup``) sampled every ``--sample-every`` batches: its growth from the first sample on
  says whether copy-on-write pages pile up over an epoch.

    # generate (once) and measure both sides
    .venv/bin/python scripts/bench_scale.py --root /tmp/coco_scale --side both \\
        --yolov5 /tmp/yolov5 --yolov5-python /tmp/yv5venv/bin/python

This file imports neither lightning_yolo nor YOLOv5 at module level, so either venv can run it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "
NC = 80
BOXES_PER_IMAGE = 7.3
BACKGROUND_FRACTION = 0.01
IMAGE_VARIANTS = 64  # distinct JPEGs written (sizes and content); files cycle through them
SIDE_RANGE = (48, 160)  # pixels, width and height of the small JPEGs


# ---------------------------------------------------------------------------------------------------- dataset
def generate_dataset(root: Path, train: int, val: int, seed: int = 0) -> Path:
    """Write the synthetic COCO-sized dataset under ``root`` (unless its yaml exists); returns the yaml path.

    Written into ``<root>.partial`` and renamed into place, so an interrupted run never leaves a half set.
    """
    import numpy as np

    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        return data_yaml
    rng = np.random.default_rng(seed)
    variants = _jpeg_variants(rng)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, count in (("train", train), ("val", val)):
        _write_split(tmp, split, count, variants, rng)
    names = "\n".join(f"  {i}: class{i}" for i in range(NC))
    (tmp / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    tmp.rename(root)
    return data_yaml


def _jpeg_variants(rng: Any) -> list[bytes]:
    import cv2
    import numpy as np

    out = []
    for _ in range(IMAGE_VARIANTS):
        h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
        base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return out


def _write_split(root: Path, split: str, count: int, variants: list[bytes], rng: Any) -> None:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    kinds = rng.random(count)
    boxes = 1 + rng.poisson(BOXES_PER_IMAGE / (1 - BACKGROUND_FRACTION) - 1, size=count)
    for i in range(count):
        stem = f"{i:012d}"
        (images / f"{stem}.jpg").write_bytes(variants[i % len(variants)])
        if kinds[i] < BACKGROUND_FRACTION / 2:
            continue  # background without a label file
        n = 0 if kinds[i] < BACKGROUND_FRACTION else int(boxes[i])
        (labels / f"{stem}.txt").write_text(_label_text(rng, n))


def _label_text(rng: Any, n: int) -> str:
    cls = rng.integers(0, NC, size=n)
    wh = rng.uniform(0.02, 0.6, size=(n, 2))
    xy = wh / 2 + rng.random((n, 2)) * (1 - wh)
    return "".join(
        f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
        for c, (x, y), (w, h) in zip(cls.tolist(), xy.tolist(), wh.tolist(), strict=True)
    )


# ---------------------------------------------------------------------------------------------------- memory
def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process now (``/proc/<pid>/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def uss_bytes(pid: int) -> int:
    """Private (unshared) memory of a process: ``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


def child_pids() -> list[int]:
    """Live child processes of this process (the loader workers once a loader iterates)."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids += [int(c) for c in children.read_text().split()]
    return sorted(set(pids))


def peak_rss_above(baseline: int) -> int:
    """Peak resident memory of this process so far (``ru_maxrss``) above ``baseline`` bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline


# ---------------------------------------------------------------------------------------------------- sides
def train_dataset_ours(args: argparse.Namespace, data_yaml: Path) -> tuple[Any, Any, Path]:
    """lightning_yolo's data module and train dataset, and the split's label cache file."""
    from lightning_yolo.data.cache import label_cache_path
    from lightning_yolo.data.datamodule import YOLODataModule

    dm = YOLODataModule(
        data=str(data_yaml),
        imgsz=args.imgsz,
        batch_size=args.batch_size,
        workers=args.workers,
        albumentations=False,  # YOLOv5's requirements leave albumentations out
        **_augment_settings(),
    )
    return dm, dm.build_dataset("train"), label_cache_path(dm.config.splits["train"])


def train_loader_yolov5(args: argparse.Namespace, data_yaml: Path) -> tuple[Any, Path]:
    """YOLOv5's ``create_dataloader`` (training settings of its ``train.py``), and its label cache file."""
    import yaml

    checkout = str(Path(args.yolov5).resolve())
    create_dataloader = _yolov5_dataloaders().create_dataloader
    hyp = yaml.safe_load((Path(checkout) / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    hyp.update(_augment_settings())
    train = data_yaml.parent / "images" / "train"
    loader, _ = create_dataloader(
        str(train), args.imgsz, args.batch_size, 32, hyp=hyp, augment=True, workers=args.workers, prefix="train: ",
        shuffle=True, seed=0,
    )  # fmt: skip
    return loader, data_yaml.parent / "labels" / "train.cache"


def _augment_settings() -> dict[str, float]:
    from bench_loader import SCRATCH_LOW_AUGMENT

    return dict(SCRATCH_LOW_AUGMENT)


def measure_scan(args: argparse.Namespace, data_yaml: Path) -> dict[str, Any]:
    """Seconds to build the train dataset (``--mode cold``: label cache deleted first), cache size, peak RSS."""
    _import_side(args.side)
    cache_file = _cache_file(args, data_yaml)
    if args.mode == "cold":
        cache_file.unlink(missing_ok=True)
    baseline = rss_bytes()
    start = time.perf_counter()
    if args.side == "ours":
        _, dataset, _ = train_dataset_ours(args, data_yaml)
    else:
        loader, _ = train_loader_yolov5(args, data_yaml)
        dataset = loader.dataset
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "images": len(dataset),
        "cache_bytes": cache_file.stat().st_size if cache_file.is_file() else 0,
        "peak_rss_above_imports": peak_rss_above(baseline),
    }


def _import_side(side: str) -> None:
    """Import each side's heavy modules before the clock and the memory baseline."""
    import cv2  # noqa: F401
    import torch  # noqa: F401

    if side == "ours":
        import lightning_yolo.data.datamodule  # noqa: F401
    else:
        _yolov5_dataloaders()


def _yolov5_dataloaders() -> Any:
    """YOLOv5's ``utils.dataloaders`` from the ``--yolov5`` checkout (put on ``sys.path`` by :func:`run_side`)."""
    import utils.dataloaders

    return utils.dataloaders


def _cache_file(args: argparse.Namespace, data_yaml: Path) -> Path:
    if args.side == "yolov5":
        return data_yaml.parent / "labels" / "train.cache"
    from lightning_yolo.data.cache import label_cache_path

    return label_cache_path([data_yaml.parent / "images" / "train"])


def measure_loader(args: argparse.Namespace, data_yaml: Path) -> dict[str, Any]:
    """Batches/s over ``--batches`` training batches and the workers' private memory along the way."""
    _import_side(args.side)
    if args.side == "ours":
        dm, _, _ = train_dataset_ours(args, data_yaml)
        loader = dm.train_dataloader()
    else:
        loader, _ = train_loader_yolov5(args, data_yaml)
    samples, start, timed = [], time.perf_counter(), 0
    for i, _batch in enumerate(loader, 1):
        if i == args.warmup:
            start = time.perf_counter()
        if i % args.sample_every == 0 or i == args.batches:
            samples.append((i, sum(uss_bytes(p) for p in child_pids())))
        if i == args.batches:
            timed = i - args.warmup
            break
    seconds = time.perf_counter() - start
    first = next(u for b, u in samples if b >= args.warmup)
    return {
        "batches_per_s": timed / seconds,
        "worker_uss_first": first,
        "worker_uss_last": samples[-1][1],
        "worker_uss_growth": samples[-1][1] - first,
        "worker_uss_samples": samples,
        "workers_seen": len(child_pids()),
    }


def run_side(args: argparse.Namespace) -> None:
    """Measure one side and print one ``RESULT {json}`` line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # scan progress into the log
    data_yaml = generate_dataset(Path(args.root), args.train, args.val, args.seed)
    if args.side == "yolov5":
        sys.path.insert(0, str(Path(args.yolov5).resolve()))  # YOLOv5's modules import each other as top-level names
    result = measure_scan(args, data_yaml) if args.what == "scan" else measure_loader(args, data_yaml)
    result.update(side=args.side, what=args.what, mode=args.mode, loadavg=os.getloadavg()[0])
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------- driver
def drive(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Alternate the sides for ``--runs`` rounds of cold + warm scans and ``--loader-runs`` loader runs."""
    from bench_loader import bench_env, run_measurement

    script, work = Path(__file__).resolve(), Path(args.work_dir)
    generate_dataset(Path(args.root), args.train, args.val, args.seed)
    env, rows = bench_env(work), []
    pythons = {"ours": args.ours_python, "yolov5": args.yolov5_python}
    plan = [("scan", mode) for _ in range(args.runs) for mode in ("cold", "warm")]
    plan += [("loader", "warm")] * args.loader_runs
    for k, (what, mode) in enumerate(plan):
        for side in ("ours", "yolov5") if k % 2 == 0 else ("yolov5", "ours"):
            command = [pythons[side], str(script), "--side", side, "--what", what, "--mode", mode, *forwarded]
            row = run_measurement(command, env, work / "logs" / f"scale_{what}_{mode}_{side}_{k}.log")
            rows.append(row)
            shown = {k: v for k, v in row.items() if k != "worker_uss_samples"}
            print(f"{k} {side:6s} {what} {mode}: {json.dumps(shown)}", flush=True)
    print(summary_table(rows))


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the medians of each figure, per side, with ours relative to YOLOv5's."""

    def med(side: str, what: str, mode: str, key: str) -> float:
        values = [r[key] for r in rows if (r["side"], r["what"], r["mode"]) == (side, what, mode)]
        return statistics.median(values) if values else float("nan")

    figures = [  # (name, what, mode, key, scale, higher is better)
        ("cold scan + train dataset (s)", "scan", "cold", "seconds", 1, False),
        ("warm start + train dataset (s)", "scan", "warm", "seconds", 1, False),
        ("label cache file (MB)", "scan", "warm", "cache_bytes", 1e-6, False),
        ("peak RSS above imports, cold (MB)", "scan", "cold", "peak_rss_above_imports", 2**-20, False),
        ("peak RSS above imports, warm (MB)", "scan", "warm", "peak_rss_above_imports", 2**-20, False),
        ("loader workers' private memory growth (MB)", "loader", "warm", "worker_uss_growth", 2**-20, False),
        ("loader batches/s", "loader", "warm", "batches_per_s", 1, True),
    ]
    lines = [
        "| figure | lightning_yolo | YOLOv5 | lightning_yolo better by (x) |",
        "| --- | --- | --- | --- |",
    ]
    for name, what, mode, key, scale, higher in figures:
        ours, theirs = med("ours", what, mode, key) * scale, med("yolov5", what, mode, key) * scale
        ratio = (ours / theirs if higher else theirs / ours) if ours and theirs else float("nan")
        lines.append(f"| {name} | {ours:.2f} | {theirs:.2f} | {ratio:.2f} |")
    loads = [r["loadavg"] for r in rows]
    lines.append(f"\n1-minute load average at the end of each run: {min(loads):.2f} to {max(loads):.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; also return the settings a driver forwards to every measurement."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder of the generated dataset (written once, then reused)")
    p.add_argument("--train", type=int, default=120_000, help="training images generated")
    p.add_argument("--val", type=int, default=5_000, help="validation images generated")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--side", choices=("ours", "yolov5", "both"), default="both", help="side to measure")
    p.add_argument("--what", choices=("scan", "loader"), default="scan", help="measurement (one side)")
    p.add_argument("--mode", choices=("cold", "warm"), default="warm", help="scan with or without the cache")
    p.add_argument("--yolov5", default="/tmp/yolov5", help="YOLOv5 checkout (work tree)")
    p.add_argument("--yolov5-python", default="/tmp/yv5venv/bin/python", help="interpreter of the YOLOv5 side")
    p.add_argument("--ours-python", default=sys.executable, help="interpreter of the lightning_yolo side")
    p.add_argument("--work-dir", default="/tmp/lightning_yolo_bench_scale", help="lightning_yolo cache and logs")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="loader workers (and the scan's processes)")
    p.add_argument("--batches", type=int, default=1500, help="loader batches drawn")
    p.add_argument("--warmup", type=int, default=20, help="loader batches before timing")
    p.add_argument("--sample-every", type=int, default=100, help="loader batches between memory samples")
    p.add_argument("--runs", type=int, default=3, help="rounds of cold + warm scans (median reported)")
    p.add_argument("--loader-runs", type=int, default=1, help="loader runs per side")
    args = p.parse_args(argv)
    forwarded = [
        *("--root", args.root, "--train", str(args.train), "--val", str(args.val), "--seed", str(args.seed)),
        *("--yolov5", args.yolov5, "--work-dir", args.work_dir, "--imgsz", str(args.imgsz)),
        *("--batch-size", str(args.batch_size), "--workers", str(args.workers), "--batches", str(args.batches)),
        *("--warmup", str(args.warmup), "--sample-every", str(args.sample_every)),
    ]
    return args, forwarded


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the dataset if needed, then measure one side or drive both."""
    args, forwarded = parse_args(argv)
    if args.side == "both":
        drive(args, forwarded)
    else:
        run_side(args)


if __name__ == "__main__":
    main()
