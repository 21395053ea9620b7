"""2-process DDP validation of a coco128 subset equals single-process validation exactly (every image once,
metric states gathered, losses reduced once at the end)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ddp_helpers import cli_env, common_args, ddp_args, read_events, run_cli
from fit_helpers import coco128_subset

pytestmark = pytest.mark.slow

IMAGES = 18  # 5 validation batches of 4 (the last one short): rank 0 runs 3, rank 1 runs 2


def test_ddp_validation_equals_single_process(shared: Path, tmp_path: Path) -> None:
    data = coco128_subset(shared / "data" / "coco128", tmp_path / "subset", IMAGES)
    weights = f"--model.weights={shared / 'weights' / 'yolov5n.pt'}"
    results = {}
    for label, extra in (("single", ["--trainer.devices=1"]), ("ddp", ddp_args(2))):
        out = tmp_path / label
        out.mkdir()
        args = ["validate", *common_args(data, tmp_path / "runs", imgsz=160, batch=2), weights, *extra]
        done = run_cli(args, cli_env(out, LIGHTNING_YOLO_CACHE=str(tmp_path / "cache")))
        assert done.returncode == 0, done.stderr[-3000:]
        results[label] = read_events(out, "validation")
    single = results["single"][0]["metrics"]
    assert single["metrics/mAP_0.5"] > 0.1  # a real detector on real images, not an all-zero comparison
    for rank in (0, 1):
        ddp = results["ddp"][rank]["metrics"]
        for key in ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "fitness"):
            assert ddp[key] == single[key], (rank, key)  # exact, to the last digit
        for key in ("val/box_loss", "val/obj_loss", "val/cls_loss"):
            assert ddp[key] == pytest.approx(single[key], rel=1e-6), (rank, key)  # summation order only
