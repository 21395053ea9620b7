"""A 2-process DDP fit (gloo, CPU) through the command line: one run folder, one results.csv, one set of plots,
identical evolved anchors on both ranks, and the global batch size driving the accumulation."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from ddp_helpers import cli_env, common_args, ddp_args, read_events, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_fit(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("ddp_fit")
    # thr 1.5 makes the default anchors a poor fit (BPR < 0.98), so AutoAnchor evolves new ones on rank 0
    args = ["fit", *common_args(tiny_dataset, tmp / "runs"), *ddp_args(2), "--name=t", "--trainer.max_epochs=2"]
    args += ["--autoanchor.thr=1.5", "--autoanchor.gen=30"]
    done = run_cli(args, cli_env(tmp))
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, read_events(tmp, "train_start")


def test_one_run_folder_one_results_csv_one_set_of_plots(ddp_fit) -> None:
    tmp, starts = ddp_fit
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    assert runs == ["t"]  # rank 1 did not number its own folder
    run = tmp / "runs" / "t"
    assert {starts[0]["run_dir"], starts[1]["run_dir"]} == {str(run)}
    with (run / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]  # written once per epoch, by rank 0 only
    assert all(float(rows[-1][k]) > 0 for k in ("train/box_loss", "val/box_loss", "val/obj_loss"))
    for picture in ("labels.jpg", "results.png", "train_batch0.jpg", "val_batch0_labels.jpg", "confusion_matrix.png"):
        assert (run / picture).is_file(), picture
    assert (run / "weights" / "last.ckpt").is_file() and (run / "weights" / "best.ckpt").is_file()


def test_anchors_identical_on_both_ranks_after_evolution(ddp_fit) -> None:
    from lightning_yolo.models.yolo import DetectionModel

    _, starts = ddp_fit
    assert set(starts) == {0, 1} and starts[0]["world"] == 2
    default = DetectionModel("yolov5n.yaml", nc=1).model[-1].anchors.tolist()
    assert starts[0]["anchors"] != default  # evolved
    assert starts[0]["anchors"] == starts[1]["anchors"]
    assert starts[0]["loss_anchors"] == starts[1]["loss_anchors"] == starts[0]["anchors"]


def test_accumulation_uses_the_global_batch(ddp_fit) -> None:
    _, starts = ddp_fit
    # 2 images per device x 2 devices: YOLOv5's --batch-size 4, accumulating round(64 / 4) = 16 batches per step
    assert starts[0]["accumulate_batch"] == starts[1]["accumulate_batch"] == 4
    assert starts[0]["accumulate"] == 16
