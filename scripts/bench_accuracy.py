"""Fine-tune accuracy over seeds: lightning_yolo's ``fit`` beside YOLOv5's ``train.py`` on the same datasets.

For every dataset and seed, both sides fine-tune the same weights (default yolov5n.pt) with the same settings
(default 320 px, batch 16, 15 epochs, ``hyp.scratch-low``, 2 loader workers, CPU) and the final epoch's validation
(EMA weights, YOLOv5's mAP) is read from each side's ``results.csv``. The script prints every run, then per
dataset the mean and the sample standard deviation over seeds of mAP@0.5 and mAP@0.5:0.95 on each side, and the
difference of the means. Runs whose ``results.csv`` already holds all epochs are read, not re-run, so an
interrupted benchmark continues where it stopped.

    python scripts/bench_accuracy.py --data /data/a/data.yaml /data/b/data.yaml --seeds 0 1 2 \\
        --weights ../shared/weights/yolov5n.pt --yolov5 /tmp/yolov5 --yolov5-python /tmp/yv5venv/bin/python

YOLOv5 resolves a relative ``path:`` against its own folder, so it is given a copy of each data yaml with an
absolute ``path:`` (written in the work folder; the datasets themselves are never written by this script).

``--subset-of coco128.yaml --subset-classes 0 2 ...`` first writes a new-class dataset into the work folder:
the named classes of a YOLO dataset renumbered 0..k-1 (other boxes dropped), images linked, not copied.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

METRICS = ("metrics/mAP_0.5", "metrics/mAP_0.5:0.95")


def absolute_yaml(data: Path, out_dir: Path) -> Path:
    """A copy of the data yaml with ``path:`` made absolute (relative ``path:`` is taken from the yaml's folder)."""
    spec = yaml.safe_load(data.read_text())
    root = Path(spec.get("path") or ".")
    spec["path"] = str(root if root.is_absolute() else (data.parent / root).resolve())
    spec.pop("download", None)
    out = out_dir / f"{data.parent.name}_{data.stem}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def make_subset(data: Path, classes: Sequence[int], out_dir: Path) -> Path:
    """Write a dataset holding only ``classes`` of ``data`` (renumbered 0..k-1); images are symlinked."""
    spec = yaml.safe_load(absolute_yaml(data, out_dir / "yaml").read_text())
    names = spec["names"]
    names = names if isinstance(names, list) else [names[i] for i in sorted(names)]
    remap = {c: i for i, c in enumerate(classes)}
    root, new_root = Path(spec["path"]), out_dir / f"{data.stem}_{len(classes)}cls"
    splits = {}
    for split in ("train", "val"):
        images = root / spec[split]
        dest = new_root / "images" / split
        labels_dest = new_root / "labels" / split
        dest.mkdir(parents=True, exist_ok=True)
        labels_dest.mkdir(parents=True, exist_ok=True)
        for image in sorted(images.iterdir()):
            link = dest / image.name
            if not link.exists():
                link.symlink_to(image.resolve())
            label = Path(str(image.parent).replace("/images", "/labels")) / f"{image.stem}.txt"
            rows = label.read_text().split("\n") if label.is_file() else []
            kept = [
                " ".join([str(remap[int(r.split()[0])]), *r.split()[1:]])
                for r in rows
                if r.strip() and int(r.split()[0]) in remap
            ]
            (labels_dest / f"{image.stem}.txt").write_text("\n".join(kept) + ("\n" if kept else ""))
        splits[split] = f"images/{split}"
    out = new_root / "data.yaml"
    out.write_text(yaml.safe_dump({"path": str(new_root), **splits, "names": [names[c] for c in classes]}))
    return out


def final_row(results_csv: Path, epochs: int) -> dict[str, float] | None:
    """The last epoch's metrics from a ``results.csv`` (either side's), or None when the run is not complete."""
    if not results_csv.is_file():
        return None
    with results_csv.open() as f:
        rows = [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    if len(rows) < epochs:
        return None
    return {m: float(rows[-1][m]) for m in METRICS}


def ours_command(args: argparse.Namespace, data: Path, seed: int, project: Path, name: str) -> list[str]:
    """lightning_yolo's fine-tune command line."""
    return [
        *(args.ours_python, "-m", "lightning_yolo", "fit", "--model.weights", args.weights),
        *("--data.data", str(data), "--data.imgsz", str(args.imgsz), "--data.batch_size", str(args.batch_size)),
        *("--data.workers", str(args.workers), "--trainer.max_epochs", str(args.epochs)),
        *("--trainer.accelerator", "cpu", "--seed_everything", str(seed)),
        *("--trainer.enable_progress_bar", "false", "--noplots", "--nosave"),
        *("--project", str(project), "--name", name, "--exist_ok"),
    ]


def yolov5_command(args: argparse.Namespace, data: Path, seed: int, project: Path, name: str) -> list[str]:
    """YOLOv5's ``train.py`` command line with the same settings."""
    return [
        *(args.yolov5_python, "train.py", "--weights", str(Path(args.weights).resolve()), "--data", str(data)),
        *("--img", str(args.imgsz), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)),
        *("--workers", str(args.workers), "--device", "cpu", "--seed", str(seed), "--noplots", "--nosave"),
        *("--project", str(project), "--name", name, "--exist-ok"),
    ]


def run_one(args: argparse.Namespace, side: str, data: Path, seed: int) -> dict[str, float]:
    """Run (or read back) one side's fine-tune of ``data`` with ``seed``; returns its final metrics."""
    work = Path(args.work_dir).resolve()
    name = f"{data.parent.name}_s{seed}"
    project = work / f"runs_{side}"
    done = final_row(project / name / "results.csv", args.epochs)
    if done is not None:
        return done
    if side == "ours":
        command, cwd = ours_command(args, data, seed, project, name), None
    else:
        command, cwd = yolov5_command(args, absolute_yaml(data, work / "yaml"), seed, project, name), args.yolov5
    env = {**os.environ, "WANDB_MODE": "disabled", "YOLOv5_AUTOINSTALL": "false"}
    env.setdefault("LIGHTNING_YOLO_CACHE", str(work / "cache"))
    log = work / "logs" / f"{side}_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        proc = subprocess.run(command, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    result = final_row(project / name / "results.csv", args.epochs)
    if proc.returncode != 0 or result is None:
        raise SystemExit(f"error: {side} run {name} failed (exit {proc.returncode}); see {log}")
    return result


def summarise(results: dict[tuple[str, str, int], dict[str, float]], datasets: list[str], sides: list[str]) -> None:
    """Per dataset: every seed, then mean and sample standard deviation per side, and the difference of means."""
    for dataset in datasets:
        print(f"\n{dataset}")
        seeds = sorted({seed for (d, _, seed) in results if d == dataset})
        print("| seed | " + " | ".join(f"{s} mAP@0.5 / mAP@0.5:0.95" for s in sides) + " |")
        print("| --- |" + " --- |" * len(sides))
        for seed in seeds:
            cells = [results.get((dataset, s, seed)) for s in sides]
            print(
                f"| {seed} | "
                + " | ".join(f"{c[METRICS[0]]:.3f} / {c[METRICS[1]]:.3f}" if c else "-" for c in cells)
                + " |"
            )
        means = {}
        for side in sides:
            values = [results[(dataset, side, s)] for s in seeds if (dataset, side, s) in results]
            cells = []
            for metric in METRICS:
                xs = [v[metric] for v in values]
                means[(side, metric)] = statistics.mean(xs)
                spread = statistics.stdev(xs) if len(xs) > 1 else 0.0
                cells.append(f"{statistics.mean(xs):.3f} ± {spread:.3f}")
            print(f"| mean ± sd ({side}) | {' / '.join(cells)} |")
        if len(sides) == 2:
            diff = [means[(sides[0], m)] - means[(sides[1], m)] for m in METRICS]
            print(f"{sides[0]} - {sides[1]}: mAP@0.5 {diff[0]:+.3f}, mAP@0.5:0.95 {diff[1]:+.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run every (dataset, seed, side) not yet done, then print the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=[], help="dataset yamls (YOLO format)")
    p.add_argument("--subset-of", default=None, help="make a new-class dataset from this yaml first (and use it)")
    p.add_argument("--subset-classes", type=int, nargs="+", default=[], help="class ids kept by --subset-of")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--side", choices=("ours", "yolov5", "both"), default="both")
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[2] / "shared/weights/yolov5n.pt"))
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--yolov5", default="/tmp/yolov5", help="upstream YOLOv5 checkout")
    p.add_argument("--yolov5-python", default="/tmp/yv5venv/bin/python")
    p.add_argument("--ours-python", default=sys.executable)
    p.add_argument("--work-dir", default="/tmp/lightning_yolo_accuracy")
    args = p.parse_args(argv)
    datasets = [Path(d).resolve() for d in args.data]
    if args.subset_of:
        datasets.append(make_subset(Path(args.subset_of), args.subset_classes, Path(args.work_dir).resolve()))
    if not datasets:
        p.error("give --data or --subset-of")
    sides = ["ours", "yolov5"] if args.side == "both" else [args.side]
    results = {}
    for data in datasets:
        for seed in args.seeds:
            for side in sides:
                results[(data.parent.name, side, seed)] = metrics = run_one(args, side, data, seed)
                line = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                print(f"{data.parent.name} seed {seed} {side}: {line}")
                sys.stdout.flush()
    summarise(results, [d.parent.name for d in datasets], sides)


if __name__ == "__main__":
    main()
