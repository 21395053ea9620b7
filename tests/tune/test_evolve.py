"""YOLOv5's genetic algorithm: mutation, limits, rounding and parent selection against references written here
from YOLOv5 v7.0 ``train.py`` (its evolve metadata and its mutation formula), not from this package's output."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lightning_yolo.tune.evolve import (
    constrain,
    mutation_factors,
    next_generation,
    parent_weights,
    select_parent,
)
from lightning_yolo.tune.space import search_space

# YOLOv5 v7.0 train.py `meta`: key -> (mutation gain, lower limit, upper limit); iou_t and anchors are not settings here
YOLOV5_META = {
    "lr0": (1, 1e-5, 1e-1),
    "lrf": (1, 0.01, 1.0),
    "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0),
    "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4.0),
    "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0),
    "anchor_t": (1, 2.0, 8.0),
    "fl_gamma": (0, 0.0, 2.0),
    "hsv_h": (1, 0.0, 0.1),
    "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0),
    "translate": (1, 0.0, 0.9),
    "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001),
    "flipud": (1, 0.0, 1.0),
    "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0),
    "copy_paste": (1, 0.0, 1.0),
}
GAINS = np.array([m[0] for m in YOLOV5_META.values()], dtype=float)
LOWER = np.array([m[1] for m in YOLOV5_META.values()])
UPPER = np.array([m[2] for m in YOLOV5_META.values()])
# hyp.scratch-low.yaml values of those keys
SCRATCH_LOW = [0.01, 0.01, 0.937, 0.0005, 3.0, 0.8, 0.1, 0.05, 0.5, 1.0, 1.0, 1.0, 4.0, 0.0]
SCRATCH_LOW += [0.015, 0.7, 0.4, 0.0, 0.1, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0]


def reference_factors(gains: np.ndarray, npr: np.random.RandomState) -> np.ndarray:
    """YOLOv5's mutation: mp 0.8, sigma 0.2, redrawn until something changes, factors clipped to [0.3, 3]."""
    mp, s = 0.8, 0.2
    ng = len(gains)
    v = np.ones(ng)
    while all(v == 1):
        v = (gains * (npr.random(ng) < mp) * npr.randn(ng) * npr.random() * s + 1).clip(0.3, 3.0)
    return v


class _FixedDraw(random.Random):
    """A ``random.Random`` whose every draw is ``u`` (so ``choices`` picks what ``u`` picks)."""

    def __init__(self, u: float) -> None:
        super().__init__(0)
        self.u = u

    def random(self) -> float:
        return self.u


def reference_parent(x: np.ndarray, fit: np.ndarray, method: str, u: float) -> np.ndarray:
    """YOLOv5's parent selection: top 5 by fitness, weights fitness - min + 1e-6, `random.choices` or the mean."""
    n = min(5, len(x))
    order = np.argsort(-fit, kind="stable")
    x, fit = x[order][:n], fit[order][:n]
    w = fit - fit.min() + 1e-6
    if method == "single" or len(x) == 1:
        return x[_FixedDraw(u).choices(range(n), weights=w)[0]]
    return (x * w.reshape(n, 1)).sum(0) / w.sum()


def test_search_space_is_yolov5_meta():
    space = search_space()
    assert space.keys == tuple(YOLOV5_META)
    np.testing.assert_array_equal(space.gains, GAINS)
    np.testing.assert_array_equal(space.lower, LOWER)
    np.testing.assert_array_equal(space.upper, UPPER)


@pytest.mark.parametrize("seed", range(25))
def test_mutation_factors_equal_yolov5_formula_on_fixed_draws(seed):
    ours = mutation_factors(GAINS, np.random.RandomState(seed))
    reference = reference_factors(GAINS, np.random.RandomState(seed))
    np.testing.assert_array_equal(ours, reference)
    assert not np.all(ours == 1)
    assert np.all(ours[GAINS == 0] == 1)


def test_mutation_redraws_until_a_gene_changes():
    # one gene that sits out the first draw (uniform >= 0.8): YOLOv5 draws again
    seed = next(s for s in range(1000) if np.random.RandomState(s).random() >= 0.8)
    gains = np.ones(1)
    ours = mutation_factors(gains, np.random.RandomState(seed))
    assert ours[0] != 1
    np.testing.assert_array_equal(ours, reference_factors(gains, np.random.RandomState(seed)))


def test_no_mutable_gene_gives_ones():
    np.testing.assert_array_equal(mutation_factors(np.zeros(3), np.random.RandomState(0)), np.ones(3))


@pytest.mark.parametrize("method", ["single", "weighted"])
def test_next_generation_equals_yolov5_on_fixed_draws(method):
    rng_parents = np.random.RandomState(7)
    x = np.clip(np.array(SCRATCH_LOW) * rng_parents.uniform(0.5, 1.5, (8, len(GAINS))), LOWER, UPPER)
    fit = rng_parents.random_sample(8)
    for seed in range(20):
        ours = next_generation(x, fit, GAINS, LOWER, UPPER, np.random.RandomState(seed), method)
        npr = np.random.RandomState(seed)
        u = npr.random_sample()  # the parent's draw comes first
        parent = reference_parent(x, fit, method, u)
        mutated = parent * reference_factors(GAINS, npr)
        expected = [round(min(max(v, lo), hi), 5) for v, lo, hi in zip(mutated, LOWER, UPPER, strict=True)]
        np.testing.assert_array_equal(ours, expected)


def test_limits_and_rounding_hold_over_1000_seeded_mutations():
    rng = np.random.RandomState(0)
    base = np.array(SCRATCH_LOW)
    for seed in range(1000):
        m = 1 + seed % 7
        x = constrain(base * rng.uniform(0.2, 4.0, (m, len(base))), LOWER, UPPER)
        child = next_generation(x, rng.random_sample(m), GAINS, LOWER, UPPER, np.random.RandomState(seed))
        assert np.all(child >= LOWER) and np.all(child <= UPPER), seed
        assert all(v == round(v, 5) for v in child.tolist()), seed
        assert np.all(child[GAINS == 0] <= UPPER[GAINS == 0])


def test_unmutated_genes_keep_the_parents_value():
    x = constrain(np.array(SCRATCH_LOW)[None], LOWER, UPPER)
    child = next_generation(x, np.zeros(1), GAINS, LOWER, UPPER, np.random.RandomState(3))
    np.testing.assert_array_equal(child[GAINS == 0], x[0][GAINS == 0])


def test_parent_weights_are_fitness_above_the_worst():
    np.testing.assert_allclose(parent_weights(np.array([0.5, 0.2, 0.3])), [0.3 + 1e-6, 1e-6, 0.1 + 1e-6])


def test_single_parent_is_drawn_like_random_choices_among_the_top_five():
    x = np.arange(7, dtype=float)[:, None] * np.ones((7, 3))
    fit = np.array([0.1, 0.7, 0.3, 0.0, 0.9, 0.5, 0.2])
    for u in np.linspace(0, 0.999999, 301):
        np.testing.assert_array_equal(select_parent(x, fit, "single", u), reference_parent(x, fit, "single", u))
    chosen = {int(select_parent(x, fit, "single", u)[0]) for u in np.linspace(0, 0.999999, 1001)}
    assert chosen == {1, 2, 4, 5}  # the top five (rows 4, 1, 5, 2, 6) but the worst of them has weight 1e-6 only
    # empirical frequencies follow the weights
    w = np.array([0.9, 0.7, 0.5, 0.3, 0.2]) - 0.2 + 1e-6
    draws = [int(select_parent(x, fit, "single", u)[0]) for u in np.random.RandomState(0).random_sample(20000)]
    freq = np.array([draws.count(i) for i in (4, 1, 5, 2, 6)]) / len(draws)
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.01)


def test_weighted_parent_is_the_weighted_mean_of_the_top_five():
    rng = np.random.RandomState(1)
    x, fit = rng.random_sample((9, 4)), rng.random_sample(9)
    np.testing.assert_allclose(select_parent(x, fit, "weighted", 0.5), reference_parent(x, fit, "weighted", 0.5))


def test_rounding_is_five_decimals_after_clipping():
    values = constrain(np.array([0.123456789, -1.0, 7.0, 1e-7]), np.zeros(4), np.array([1.0, 1.0, 5.0, 1.0]))
    np.testing.assert_array_equal(values, [0.12346, 0.0, 5.0, 0.0])
