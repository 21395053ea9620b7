"""Validation metrics: AP parity with YOLOv5, hand-derived cases, empty images and sharded accumulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_yolo.evaluation.ap import ap_per_class, fitness
from lightning_yolo.evaluation.matching import match_predictions
from lightning_yolo.evaluation.metric import DetectionMetric

IOUV = torch.linspace(0.5, 0.95, 10)

# With 101-point interpolation a class found completely at precision 1 scores 0.995, not 1: the last sample
# (recall 1.0) reads the sentinel precision 0, so the final 0.01-wide trapezoid counts half.
PERFECT_AP = 1 - 0.5 * 0.01


def _det(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(-1, 6)


def _lab(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(-1, 5)


def test_against_yolov5_ap_per_class(shared):
    ref = torch.load(shared / "reference" / "ap_per_class_random.pt", weights_only=True)
    res = ap_per_class(ref["tp"], ref["conf"], ref["pred_cls"], ref["target_cls"])
    expected = {"p": res.p, "r": res.r, "f1": res.f1, "ap": res.ap, "tp_at_maxf1": res.tp, "fp_at_maxf1": res.fp}
    for key, value in expected.items():
        torch.testing.assert_close(torch.from_numpy(value), ref[key], msg=key)
    torch.testing.assert_close(torch.from_numpy(res.unique_classes).long(), ref["unique_classes"])
    for key in ("mp", "mr", "map50", "map", "fitness"):
        assert getattr(res, key) == pytest.approx(ref[key], rel=1e-12, abs=1e-15), key
    assert res.px.shape == (1000,) and res.pr_curve.shape == res.p_curve.shape == res.f1_curve.shape == (5, 1000)


def test_ap_perfect_predictions():
    tp = np.ones((4, 10), dtype=bool)
    res = ap_per_class(tp, np.full(4, 0.9), np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(res.ap, PERFECT_AP)
    np.testing.assert_allclose(res.p, 1.0)
    np.testing.assert_allclose(res.r, 1.0)
    np.testing.assert_array_equal(res.tp, [2, 2])
    np.testing.assert_array_equal(res.fp, [0, 0])


def test_ap_one_missing_box_halves_recall():
    # one class, two labels, one correct detection: recall 0.5 at precision 1; the envelope is 1 up to recall 0.5
    # then falls linearly to the sentinel 0 at recall 1, so AP = 0.5 + 0.5 * 0.5 = 0.75
    res = ap_per_class(np.ones((1, 10), dtype=bool), np.array([0.9]), np.array([3]), np.array([3, 3]))
    np.testing.assert_allclose(res.ap, 0.75)
    assert res.p[0] == pytest.approx(1.0) and res.r[0] == pytest.approx(0.5)
    assert res.tp[0] == 1 and res.fp[0] == 0 and res.unique_classes.tolist() == [3]


def test_fitness_weights():
    assert fitness(0.5, 0.3) == pytest.approx(0.1 * 0.5 + 0.9 * 0.3)


def test_match_predictions_thresholds_and_classes():
    labels = _lab([0, 0, 0, 10, 10])
    dets = _det([0, 0, 10, 7.7, 0.9, 0], [0, 0, 10, 10, 0.8, 1])  # IoU 0.77 same class; exact box, wrong class
    correct = match_predictions(dets, labels, IOUV)
    assert correct.dtype == torch.bool and correct.shape == (2, 10)
    assert correct[0].tolist() == [True] * 6 + [False] * 4
    assert not correct[1].any()


def test_match_predictions_one_label_per_detection_more_confident_first():
    # two detections on one label: at IoU 0.5 the label goes to the first (most confident) detection even though
    # the second overlaps more (val.py picks per label in detection order); above 0.77 only the second qualifies
    labels = _lab([0, 0, 0, 10, 10])
    dets = _det([0, 0, 10, 7.7, 0.9, 0], [0, 0, 10, 10, 0.8, 0])
    correct = match_predictions(dets, labels, IOUV)
    assert correct[0].tolist() == [True] * 6 + [False] * 4
    assert correct[1].tolist() == [False] * 6 + [True] * 4


def test_match_predictions_detection_takes_its_best_label():
    labels = _lab([0, 0, 0, 10, 10], [0, 0, 0, 10, 8])
    dets = _det([0, 0, 10, 8, 0.9, 0])  # IoU 0.8 with label 0, 1.0 with label 1
    assert match_predictions(dets, labels, torch.tensor([0.5, 0.9])).tolist() == [[True, True]]


def test_match_predictions_empty_inputs():
    assert match_predictions(_det(), _lab([0, 0, 0, 1, 1]), IOUV).shape == (0, 10)
    assert not match_predictions(_det([0, 0, 1, 1, 0.5, 0]), _lab(), IOUV).any()


def _hand_case() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    preds = [
        _det([0, 0, 10, 10, 0.9, 0], [20, 20, 40, 40, 0.8, 1]),  # both correct
        _det([50, 50, 60, 60, 0.7, 0]),  # background image: a false positive of class 0
        _det(),  # labelled image without detections: a missed class-1 box
        _det(),  # empty image
    ]
    labels = [_lab([0, 0, 0, 10, 10], [1, 20, 20, 40, 40]), _lab(), _lab([1, 0, 0, 10, 10]), _lab()]
    return preds, labels


def test_detection_metric_hand_case_with_empty_images():
    metric = DetectionMetric(nc=3)
    metric.update(*_hand_case())
    out = metric.compute()
    # class 0: TP then FP, all labels found -> PERFECT_AP; class 1: one of two labels found -> 0.75 (see above)
    torch.testing.assert_close(out["class_ap50"], torch.tensor([PERFECT_AP, 0.75]))
    torch.testing.assert_close(out["class_ap"], torch.tensor([PERFECT_AP, 0.75]))
    assert out["map50"].item() == pytest.approx((PERFECT_AP + 0.75) / 2)
    assert out["fitness"].item() == pytest.approx((PERFECT_AP + 0.75) / 2)
    assert out["class_ids"].tolist() == [0, 1] and out["seen"].item() == 4 and out["instances"].item() == 3
    assert out["class_instances"].tolist() == [1, 2] and out["class_images"].tolist() == [1, 2]
    assert out["instances_per_class"].tolist() == [1, 2, 0] and out["images_per_class"].tolist() == [1, 2, 0]
    torch.testing.assert_close(out["maps"], torch.tensor([PERFECT_AP, 0.75, out["map"].item()]))
    # confusion: both boxes of image 0 right, the missed box counted as background; background images add nothing
    assert out["confusion_matrix"].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]


def test_detection_metric_perfect_predictions():
    labels = [_lab([0, 0, 0, 10, 10], [1, 5, 5, 30, 20]), _lab([1, 3, 4, 9, 9])]
    preds = [torch.cat((lab[:, 1:], torch.full((len(lab), 1), 0.9), lab[:, :1]), 1) for lab in labels]
    metric = DetectionMetric(nc=2)
    metric.update(preds, labels)
    out = metric.compute()
    for key in ("precision", "recall"):
        assert out[key].item() == pytest.approx(1.0)
    for key in ("map50", "map", "fitness"):
        assert out[key].item() == pytest.approx(PERFECT_AP)


@pytest.mark.parametrize("with_preds", [False, True])
def test_detection_metric_without_true_positives_is_all_zero(with_preds):
    metric = DetectionMetric(nc=2)
    preds = [_det([50, 50, 60, 60, 0.9, 0]) if with_preds else _det(), _det()]
    metric.update(preds, [_lab([1, 0, 0, 10, 10]), _lab()])
    out = metric.compute()
    for key in ("precision", "recall", "map50", "map", "fitness"):
        assert out[key].item() == 0.0
    assert out["class_ids"].numel() == 0 and out["instances"].item() == 1 and out["seen"].item() == 2


def test_detection_metric_without_any_update():
    metric = DetectionMetric(nc=2)
    with pytest.warns(UserWarning):  # torchmetrics warns about compute before update
        out = metric.compute()
    assert out["map"].item() == 0.0 and out["seen"].item() == 0


def _random_images(n: int, nc: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    preds, labels = [], []
    for _ in range(n):
        m = int(torch.randint(0, 4, (1,), generator=gen))
        xy = torch.rand(m, 2, generator=gen) * 80
        boxes = torch.cat((xy, xy + 10 + torch.rand(m, 2, generator=gen) * 20), 1)
        lab = torch.cat((torch.randint(0, nc, (m, 1), generator=gen).float(), boxes), 1)
        jitter = boxes + torch.randn(m, 4, generator=gen) * 2
        extra = torch.rand(int(torch.randint(0, 3, (1,), generator=gen)), 4, generator=gen).sort(1).values * 100
        det_boxes = torch.cat((jitter, extra))
        k = det_boxes.shape[0]
        conf = torch.rand(k, generator=gen)
        cls = torch.where(torch.rand(k, generator=gen) < 0.8, torch.cat((lab[:, 0], torch.zeros(k - m))), 1.0)
        det = torch.cat((det_boxes, conf[:, None], cls[:, None]), 1)
        preds.append(det[conf.argsort(descending=True)])
        labels.append(lab)
    return preds, labels


def test_detection_metric_sharded_updates_equal_one_update():
    preds, labels = _random_images(40, nc=3, seed=0)
    whole = DetectionMetric(nc=3)
    whole.update(preds, labels)
    split = DetectionMetric(nc=3)
    for start in range(0, 40, 7):
        split.update(preds[start : start + 7], labels[start : start + 7])
    a, b = whole.compute(), split.compute()
    assert a["map"] > 0 and a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_detection_metric_matches_direct_ap_per_class():
    preds, labels = _random_images(30, nc=3, seed=1)
    metric = DetectionMetric(nc=3)
    metric.update(preds, labels)
    out = metric.compute()
    tp = torch.cat([match_predictions(p, lab, IOUV) for p, lab in zip(preds, labels, strict=True)])
    res = ap_per_class(
        tp,
        torch.cat([p[:, 4] for p in preds]),
        torch.cat([p[:, 5] for p in preds]),
        torch.cat([lab[:, 0] for lab in labels]),
    )
    assert out["map"].item() == pytest.approx(res.map, rel=1e-6)
    assert out["precision"].item() == pytest.approx(res.mp, rel=1e-6)
    assert metric.last_result is not None and metric.last_result.p_curve.shape == (3, 1000)


def test_confusion_matrix_wrong_class_and_background():
    metric = DetectionMetric(nc=2)
    dets = _det([0, 0, 10, 10, 0.9, 1], [50, 50, 60, 60, 0.9, 0], [0, 0, 10, 10, 0.1, 0])
    metric.update([dets], [_lab([0, 0, 0, 10, 10])])
    # label 0 predicted as 1; the far detection is a background false positive; the 0.1 one is below conf
    assert metric.compute()["confusion_matrix"].tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_confusion_matrix_unpaired_detections_uncounted_without_any_pair():
    # YOLOv5 counts background false positives only in images where at least one label was paired
    metric = DetectionMetric(nc=2)
    metric.update([_det([50, 50, 60, 60, 0.9, 0])], [_lab([1, 0, 0, 10, 10])])
    assert metric.compute()["confusion_matrix"].tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]


def _ddp_worker(rank: int, port: int, queue) -> None:
    """One of two gloo processes: shard A splits the images 15/5 (plus an empty image on rank 1); shard B gives
    every image to rank 0 and none to rank 1 (a process that never updates)."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    preds, labels = _random_images(20, nc=3, seed=0)
    split, lopsided = DetectionMetric(nc=3), DetectionMetric(nc=3)
    if rank == 0:
        split.update(preds[:15], labels[:15])
        lopsided.update(preds, labels)
    else:
        split.update([_det()], [_lab()])
        split.update(preds[15:], labels[15:])
    results = {}
    for name, metric in (("split", split), ("lopsided", lopsided)):
        results[name] = {k: v.tolist() for k, v in metric.compute().items()}
    queue.put((rank, results))
    dist.destroy_process_group()


@pytest.mark.slow
def test_detection_metric_under_ddp_counts_every_image_once():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(rank, port, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    single = DetectionMetric(nc=3)
    single.update(*_random_images(20, nc=3, seed=0))
    expected = single.compute()
    for rank in (0, 1):
        for name, extra_images in (("split", 1), ("lopsided", 0)):
            got = results[rank][name]
            for key, value in expected.items():
                want = value + extra_images if key == "seen" else value
                torch.testing.assert_close(torch.tensor(got[key], dtype=value.dtype), want, msg=f"{rank} {name} {key}")
