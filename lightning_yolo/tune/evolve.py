"""YOLOv5's genetic algorithm for hyperparameters (``train.py --evolve``, v7.0), without Ray.

One generation: take the best ``TOP_N`` previous results by fitness, choose a parent from them (``single``: one
result drawn with weights ``fitness - min + 1e-6``; ``weighted``: the weighted mean of them), multiply each gene by a
factor ``1 + gain * [u < 0.8] * z * r * 0.2`` clipped to ``[0.3, 3.0]`` (``u`` uniform per gene, ``z`` normal per
gene, ``r`` one uniform for the whole generation; drawn again until some factor differs from 1), then clip every
gene to its limits and round it to 5 decimals (YOLOv5's ``round(x, 5)``).
"""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate
from typing import Literal

import numpy as np

MUTATION_PROB = 0.8
"""Probability that a gene takes part in a mutation."""
SIGMA = 0.2
"""Scale of the normal mutation factor."""
FACTOR_LIMITS = (0.3, 3.0)
"""A mutation multiplies a gene by at most 3 and at least 0.3."""
TOP_N = 5
"""Parents are chosen among this many best previous results."""
DECIMALS = 5
"""Every gene is rounded to this many decimals after clipping."""

ParentMethod = Literal["single", "weighted"]


def top_results(hyps: np.ndarray, fitness: np.ndarray, n: int = TOP_N) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` results ``hyps (m, k)`` with the highest ``fitness (m,)``, best first; ties keep their order."""
    order = np.argsort(-np.asarray(fitness, dtype=float), kind="stable")[:n]
    return np.asarray(hyps, dtype=float)[order], np.asarray(fitness, dtype=float)[order]


def parent_weights(fitness: np.ndarray) -> np.ndarray:
    """Selection weights of candidate parents: their fitness above the worst one, plus 1e-6 so the sum is > 0."""
    fitness = np.asarray(fitness, dtype=float)
    return fitness - fitness.min() + 1e-6


def select_parent(hyps: np.ndarray, fitness: np.ndarray, method: ParentMethod, u: float) -> np.ndarray:
    """The parent of the next generation from previous results ``hyps (m, k)`` and their ``fitness (m,)``.

    Args:
        method: ``single`` draws one of the top results with probability proportional to its weight, ``weighted``
            averages them with those weights.
        u: A uniform draw in [0, 1) that picks the ``single`` parent (unused by ``weighted``); drawing it
            outside keeps the choice reproducible and testable.
    """
    top, top_fitness = top_results(hyps, fitness)
    weights = parent_weights(top_fitness)
    if method == "single" or len(top) == 1:
        cumulative = list(accumulate(float(w) for w in weights))
        return top[bisect(cumulative, u * cumulative[-1], 0, len(top) - 1)].copy()
    if method == "weighted":
        return (top * weights[:, None]).sum(0) / weights.sum()
    raise ValueError(f"parent selection must be 'single' or 'weighted', not {method!r}")


def mutation_factors(
    gains: np.ndarray, rng: np.random.RandomState, prob: float = MUTATION_PROB, sigma: float = SIGMA
) -> np.ndarray:
    """Per-gene multiplicative factors, drawn until at least one differs from 1 (all ones if every gain is 0).

    The draws come in YOLOv5's order: ``k`` uniforms (who mutates), ``k`` normals (how much), one uniform (the
    generation's scale).
    """
    gains = np.asarray(gains, dtype=float)
    k = len(gains)
    factors = np.ones(k)
    if not np.any(gains > 0):
        return factors
    while np.all(factors == 1):
        takes_part = rng.random_sample(k) < prob
        normal = rng.randn(k)
        scale = rng.random_sample()
        factors = np.clip(1 + gains * takes_part * normal * scale * sigma, *FACTOR_LIMITS)
    return factors


def constrain(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Clip each gene of ``values (..., k)`` to its limits, then round it to :data:`DECIMALS` decimals (Python's
    ``round``, as YOLOv5; its comment says significant digits, its code rounds decimals)."""
    clipped = np.minimum(np.maximum(np.asarray(values, dtype=float), lower), upper)
    return np.array([round(float(v), DECIMALS) for v in clipped.ravel()]).reshape(clipped.shape)


def next_generation(
    parent_hyps: np.ndarray,
    parent_fitness: np.ndarray,
    gains: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rng: np.random.RandomState,
    method: ParentMethod = "single",
) -> np.ndarray:
    """One new gene vector: a parent chosen from previous results, mutated, clipped and rounded.

    The parent's draw comes first from ``rng``, then the mutation's.
    """
    u = rng.random_sample()
    parent = select_parent(parent_hyps, parent_fitness, method, u)
    return constrain(parent * mutation_factors(gains, rng), lower, upper)
