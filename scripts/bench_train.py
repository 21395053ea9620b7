"""Training throughput: lightning_yolo's ``fit`` beside YOLOv5's ``train.py``, same CPU, model, data and settings.

Both sides train the same architecture from scratch (default yolov5n, 320 px, batch 16, ``hyp.scratch-low``,
matched loader workers, validation off, no AutoAnchor) on the same writable copy of a YOLOv5-format dataset, and
time every training batch from the end of one to the end of the next. The first ``--skip`` batches (start-up,
first decodes) are dropped; of the next ``--batches``, intervals that cross an epoch boundary are dropped too
(epoch ends do different work on each side: checkpoints, final-epoch validation), so the figure is steady-state
images per second inside epochs. Each side stops itself once its batches are measured.

- lightning_yolo: ``python -m lightning_yolo fit`` itself (``lightning_yolo.cli.main`` run in this process, its CLI
  class given one more callback: the timer), with ``--trainer.limit_val_batches 0 --autoanchor.enabled false`` and
  the plots off; augmentation settings are the data module's defaults (``hyp.scratch-low``).
- YOLOv5: its ``train.main(opt, callbacks)`` imported from the checkout, ``--noval --nosave --noplots
  --noautoanchor``, with an ``on_train_batch_end`` timing hook that sets ``stop_training`` when done.

    .venv/bin/python scripts/bench_train.py --side both --yolov5 /tmp/yolov5 --yolov5-python /tmp/yv5venv/bin/python

One invocation with ``--side ours`` or ``--side yolov5`` measures one side and prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_loader import (
    RESULT_PREFIX,
    add_shared_arguments,
    bench_env,
    environment_facts,
    prepare_dataset,
    print_summary,
    run_measurement,
    shared_forwarded,
    side_command,
    tree_cpu_seconds,
)


class GpuSampler:
    """Peak GPU memory of this process and the GPU's utilisation, sampled every 0.2 s during the measured window.

    Utilisation comes from NVML (``nvidia-ml-py``) when it is installed, else from ``nvidia-smi``; on a machine
    without a CUDA device every figure is absent.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _reader() -> Any:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("BENCH_GPU_INDEX", "0")))
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001 - no NVML: fall back to nvidia-smi
            import shutil
            import subprocess

            smi = shutil.which("nvidia-smi")
            if smi is None:
                return None
            query = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            index = os.environ.get("BENCH_GPU_INDEX", "0")
            return lambda: float(subprocess.run([*query, "-i", index], capture_output=True, text=True).stdout)

    def start(self) -> None:
        """Start sampling utilisation (no-op without a CUDA device)."""
        import torch

        if not torch.cuda.is_available():
            return
        read = self._reader()
        if read is None:
            return

        def loop() -> None:
            while not self._stop.wait(0.2):
                try:
                    self.samples.append(read())
                except Exception:  # noqa: BLE001 - a failed reading is one missing sample
                    pass

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def summary(self) -> dict[str, Any]:
        """Mean utilisation (%) over the window and the peak memory (GiB) allocated and reserved by torch."""
        import torch

        if not torch.cuda.is_available():
            return {}
        gib = 1024**3
        return {
            "gpu_util_mean": statistics.mean(self.samples) if self.samples else float("nan"),
            "gpu_util_samples": len(self.samples),
            "gpu_peak_allocated_gib": torch.cuda.max_memory_allocated() / gib,
            "gpu_peak_reserved_gib": torch.cuda.max_memory_reserved() / gib,
            "gpu_name": torch.cuda.get_device_name(),
        }


class BatchClock:
    """Times of batch ends, tagged with their epoch; summarises the steady-state window.

    Args:
        skip: Batch ends before the window starts.
        batches: Batch intervals in the window (the window spans ``batches + 1`` batch ends).
        batch_size: Images per batch.
    """

    def __init__(self, skip: int, batches: int, batch_size: int) -> None:
        self.skip, self.batches, self.batch_size = skip, batches, batch_size
        self.ticks: list[tuple[int, float, float]] = []  # (epoch, wall seconds, CPU seconds of the process tree)
        self.starts: list[float] = []  # wall seconds at which each batch reached the training step
        self.epoch = -1
        self.threads_in_training = 0
        self.gpu = GpuSampler()

    def start_epoch(self, epoch: int | None = None) -> None:
        """Tag the following batch ends with ``epoch`` (default: the next epoch number)."""
        self.epoch = self.epoch + 1 if epoch is None else epoch

    @property
    def done(self) -> bool:
        """True once the whole window has been recorded."""
        return len(self.ticks) >= self.skip + self.batches + 1

    def tick(self) -> None:
        """Record the end of a training batch."""
        if not self.ticks:
            import torch

            self.threads_in_training = torch.get_num_threads()
        self.ticks.append((self.epoch, time.perf_counter(), tree_cpu_seconds()))
        if len(self.ticks) == self.skip + 1:
            self.gpu.start()
        elif len(self.ticks) == self.skip + self.batches + 1:
            self.gpu.stop()

    def batch_start(self) -> None:
        """Record that a batch has arrived from the loader (on the device) and its step begins."""
        self.starts.append(time.perf_counter())

    def summary(self) -> dict[str, Any]:
        """Images/s over the window's same-epoch intervals (mean rate, and from the median interval), CPU ms/image."""
        window = self.ticks[self.skip : self.skip + self.batches + 1]
        pairs = [(a, b) for a, b in zip(window[:-1], window[1:], strict=True) if a[0] == b[0]]
        if not pairs:
            raise RuntimeError(f"no batch intervals measured ({len(self.ticks)} batch ends recorded)")
        wall = [b[1] - a[1] for a, b in pairs]
        cpu = sum(b[2] - a[2] for a, b in pairs)
        # loader wait: from one batch's end to the next batch's arrival at the training step
        ends = [t[1] for t in window[:-1]]
        waits = [min((s for s in self.starts if s >= end), default=end) - end for end in ends]
        return {
            "loader_wait_ms_per_step": 1000 * statistics.mean(waits) if waits else float("nan"),
            **self.gpu.summary(),
            "images_per_s": self.batch_size * len(wall) / sum(wall),
            "images_per_s_median_batch": self.batch_size / statistics.median(wall),
            "seconds_per_batch": sum(wall) / len(wall),
            "cpu_ms_per_image": 1000 * cpu / (self.batch_size * len(wall)),
            "intervals": len(wall),
            "batch_ends": len(self.ticks),
            "threads_in_training": self.threads_in_training,
        }


# ---------------------------------------------------------------------------------------------------- sides
def _lightning_timer(clock: BatchClock, threads: int) -> Any:
    """A Lightning callback ticking ``clock`` and stopping the Trainer once it is done.

    With ``threads``, it also sets torch's intra-op thread count when training starts.
    """
    import pytorch_lightning as pl
    import torch

    class BatchTimer(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if threads:
                torch.set_num_threads(threads)

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            clock.start_epoch(trainer.current_epoch)

        def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            clock.batch_start()

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            clock.tick()
            if clock.done:
                trainer.should_stop = True

    return BatchTimer()


def measure_ours(args: argparse.Namespace, data_yaml: Path, clock: BatchClock) -> None:
    """Run ``python -m lightning_yolo fit`` in this process (its ``main``) with a timing callback added."""
    from lightning_yolo import cli

    timer = _lightning_timer(clock, args.torch_threads)

    class TimedCLI(cli.YOLOCLI):
        """The command line's own CLI, its Trainer given one more callback."""

        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            self.trainer_defaults["callbacks"] = [*self.trainer_defaults.get("callbacks", []), timer]

    cli.YOLOCLI = TimedCLI  # main() builds its CLI by this name; everything else is the real `fit`
    try:
        cli.main(ours_argv(args, data_yaml))
    except Exception:  # noqa: BLE001 - an error after the measured window (e.g. at the epoch end) is not ours to judge
        if not clock.done:
            raise


def ours_argv(args: argparse.Namespace, data_yaml: Path) -> list[str]:
    """``python -m lightning_yolo fit`` arguments matching the YOLOv5 side (no validation, AutoAnchor or plots)."""
    return [
        *("fit", "--model.cfg", args.cfg, "--data.data", str(data_yaml)),
        *("--data.imgsz", str(args.imgsz), "--data.batch_size", str(args.batch_size)),
        *("--data.workers", str(args.workers), "--data.albumentations", str(args.albumentations).lower()),
        *(
            "--data.fast_decode",
            str(not args.full_decode).lower(),
            "--data.fast_warp",
            str(not args.exact_warp).lower(),
        ),
        *("--trainer.max_epochs", str(args.epochs), *_ours_device(args.device), "--trainer.precision", args.precision),
        *("--trainer.limit_val_batches", "0", "--autoanchor.enabled", "false"),
        *("--plots.labels", "false", "--plots.train_batches", "0", "--plots.val_batches", "0"),
        *("--project", str(Path(args.work_dir) / "runs_ours"), "--name", "exp", "--exist_ok", "true"),
    ]


def _ours_device(device: str) -> list[str]:
    """Trainer accelerator arguments for ``--device`` (``cpu`` or one GPU index, YOLOv5's spelling)."""
    if device == "cpu":
        return ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    return ["--trainer.accelerator", "gpu", "--trainer.devices", f"[{int(device)}]"]


def measure_yolov5(args: argparse.Namespace, data_yaml: Path, clock: BatchClock) -> None:
    """Train with YOLOv5's ``train.py`` from ``--yolov5``, timed by ``clock`` through its callback hooks."""
    checkout = str(Path(args.yolov5).resolve())
    sys.path.insert(0, checkout)  # YOLOv5 is not a package: its modules import each other as top-level names
    import train as yolov5_train
    from utils.callbacks import Callbacks

    sys.argv = ["train.py", *yolov5_argv(args, data_yaml)]
    opt = yolov5_train.parse_opt(known=True)
    callbacks = Callbacks()

    def batch_end(*_: Any) -> None:
        clock.tick()
        callbacks.stop_training = clock.done

    if args.torch_threads:
        import torch

        callbacks.register_action("on_train_start", callback=lambda *_: torch.set_num_threads(args.torch_threads))
    callbacks.register_action("on_train_epoch_start", callback=lambda *_: clock.start_epoch())
    callbacks.register_action("on_train_batch_start", callback=lambda *_: clock.batch_start())
    callbacks.register_action("on_train_batch_end", callback=batch_end)
    yolov5_train.main(opt, callbacks=callbacks)


def yolov5_argv(args: argparse.Namespace, data_yaml: Path) -> list[str]:
    """``train.py`` arguments matching the lightning_yolo side."""
    return [
        *("--cfg", args.cfg, "--weights", "", "--data", str(data_yaml)),
        *("--img", str(args.imgsz), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)),
        *("--workers", str(args.workers), "--device", args.device),
        *("--noval", "--nosave", "--noplots", "--noautoanchor"),
        *("--project", str(Path(args.work_dir) / "runs_yolov5"), "--name", "exp", "--exist-ok"),
    ]


def run_side(args: argparse.Namespace) -> None:
    """Measure one side and print one ``RESULT {json}`` line."""
    data_yaml = prepare_dataset(Path(args.data), Path(args.work_dir) / f"data_x{args.repeat}", args.repeat)
    clock = BatchClock(args.skip, args.batches, args.batch_size)
    (measure_ours if args.side == "ours" else measure_yolov5)(args, data_yaml, clock)
    result = clock.summary()
    result.update(side=args.side, workers=args.workers, setting="train", **environment_facts())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------- driver
def drive(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Alternate the two sides for ``--runs`` rounds, then print the medians and the ratio."""
    script, work_dir = Path(__file__).resolve(), Path(args.work_dir)
    prepare_dataset(Path(args.data), work_dir / f"data_x{args.repeat}", args.repeat)
    env, rows = bench_env(work_dir), []
    pythons = {"ours": args.ours_python, "yolov5": args.yolov5_python}
    for round_ in range(args.runs):
        for side in ("ours", "yolov5") if round_ % 2 == 0 else ("yolov5", "ours"):
            command = side_command(side, script, pythons[side], [*forwarded, "--yolov5", args.yolov5])
            row = run_measurement(command, env, work_dir / "logs" / f"train_{side}_r{round_}.log")
            rows.append(row)
            gpu = (
                f", GPU util {row['gpu_util_mean']:.0f}%, peak GPU memory {row['gpu_peak_allocated_gib']:.2f} GiB "
                f"allocated / {row['gpu_peak_reserved_gib']:.2f} GiB reserved"
                if "gpu_util_mean" in row
                else ""
            )
            print(
                f"round {round_} {side:6s}: {row['images_per_s']:.2f} img/s "
                f"(median batch {row['images_per_s_median_batch']:.2f} img/s, {row['cpu_ms_per_image']:.0f} CPU "
                f"ms/img, loader wait {row['loader_wait_ms_per_step']:.1f} ms/step{gpu}, {row['intervals']} "
                f"intervals, load {row['loadavg']:.2f}, torch threads in training {row['threads_in_training']})",
                flush=True,
            )
    print_summary(rows, "workers")


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; also return the settings a driver forwards to every measurement."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(p, imgsz=320)
    p.add_argument("--cfg", default="yolov5n.yaml", help="architecture yaml (both sides ship the same names)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (both sides)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the schedule (runs stop once measured)")
    p.add_argument("--device", default="cpu", help="cpu, or one CUDA GPU index (both sides)")
    p.add_argument(
        "--precision",
        default="32-true",
        help="lightning_yolo's --trainer.precision (16-mixed, bf16-mixed, ...); YOLOv5 always uses float16 AMP on CUDA",
    )
    p.add_argument("--skip", type=int, default=8, help="batches before the measured window")
    p.add_argument("--batches", type=int, default=40, help="batch intervals in the measured window")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="set torch's intra-op threads on both sides when training starts (0: leave each side's own choice)",
    )
    args = p.parse_args(argv)
    forwarded = [
        *shared_forwarded(args),
        *("--cfg", args.cfg, "--workers", str(args.workers), "--device", args.device, "--precision", args.precision),
        *("--epochs", str(args.epochs), "--skip", str(args.skip), "--batches", str(args.batches)),
        *("--torch-threads", str(args.torch_threads)),
    ]
    return args, forwarded


def main(argv: Sequence[str] | None = None) -> None:
    """Measure one side, or drive both."""
    args, forwarded = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    if args.side == "both":
        drive(args, forwarded)
    else:
        run_side(args)


if __name__ == "__main__":
    main()
