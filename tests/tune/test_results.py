"""evolve.csv in YOLOv5's layout and the best-hyperparameters fragment, from recorded trials (no Ray)."""

from __future__ import annotations

import numpy as np
import yaml

from lightning_yolo.tune.results import TrialRecord, add_record, load_records
from lightning_yolo.tune.space import search_space

METRICS = (
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
)


def _record(i: int, map50: float, map_: float) -> TrialRecord:
    hyp = {"lr0": 0.01 * (i + 1), "momentum": 0.9, "hsv_h": 0.015 + i / 1000}
    return TrialRecord(f"t{i}", (0.5, 0.4, map50, map_, 0.05, 0.02, 0.01), hyp)


def test_evolve_csv_has_yolov5_header_and_one_row_per_trial_once(tmp_path):
    space = search_space(["hsv_h", "lr0", "momentum"])
    for i, (m50, m) in enumerate([(0.2, 0.1), (0.6, 0.3), (0.5, 0.35)]):
        add_record(tmp_path, _record(i, m50, m), space)
    add_record(tmp_path, _record(1, 0.6, 0.3), space)  # a trial recorded again is not listed twice
    keys = (*METRICS, "lr0", "momentum", "hsv_h")  # YOLOv5's order, not the order asked
    lines = (tmp_path / "evolve.csv").read_text().splitlines()
    assert lines[0] == ("%20s," * len(keys) % keys).rstrip(",")  # YOLOv5's print_mutation header
    rows = np.loadtxt(tmp_path / "evolve.csv", delimiter=",", skiprows=1, ndmin=2)
    assert rows.shape == (3, len(keys))
    np.testing.assert_allclose(rows[:, 7], [0.01, 0.02, 0.03])
    assert [r.trial_id for r in load_records(tmp_path)] == ["t0", "t1", "t2"]


def test_fragment_holds_the_best_trial_by_yolov5_fitness(tmp_path):
    space = search_space(["lr0", "momentum", "hsv_h"])
    for i, (m50, m) in enumerate([(0.2, 0.1), (0.9, 0.3), (0.5, 0.35)]):
        add_record(tmp_path, _record(i, m50, m), space)
    # fitness 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95: 0.11, 0.36, 0.365 -> trial t2
    fragment = yaml.safe_load((tmp_path / "hyp_evolve.yaml").read_text())
    assert fragment == {"model": {"lr0": 0.03, "momentum": 0.9}, "data": {"hsv_h": 0.017}}
    assert "Best trial: t2" in (tmp_path / "hyp_evolve.yaml").read_text()
