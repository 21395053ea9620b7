"""AutoAnchor: how well a detector's anchors fit a dataset's boxes, and k-means + genetic evolution of better ones.

Everything here is pure numpy / torch (no Lightning, no model objects): the AutoAnchor callback gathers the label
sizes with `label_wh`, calls `check_anchors` and writes the anchors it returns into the model and the loss.

Anchor fit is measured with YOLOv5's ratio metric: for a label of size wh and an anchor a, r = wh / a and
x = min(r, 1 / r) taken over width and height, so x = 1 for a perfect fit and x > 1 / thr means the loss would
assign that label to that anchor (thr is the `anchor_t` hyperparameter, 4.0 by default).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lightning_yolo.ops.arrays import to_numpy

__all__ = [
    "BPR_KEEP",
    "AnchorReport",
    "anchor_fitness",
    "check_anchor_order",
    "check_anchors",
    "kmean_anchors",
    "label_wh",
]

log = logging.getLogger(__name__)

BPR_KEEP = 0.98
"""Anchors whose best possible recall is above this are kept as they are."""

_KMEANS_RESTARTS = 30  # k-means runs from fresh random seeds; the lowest distortion wins
_KMEANS_THRESH = 1e-5  # a run stops when its mean distortion changes by no more than this
_MIN_WH = 2.0  # px: labels smaller than this on both sides are left out of the fit; anchors never shrink below it
_MUTATION_PROB, _MUTATION_SIGMA, _MUTATION_RANGE = 0.9, 0.1, (0.3, 3.0)


ArrayLike = np.ndarray | torch.Tensor | Sequence


def _to_tensor(x: ArrayLike) -> torch.Tensor:
    """Float32 CPU tensor view of an array, tensor (any device) or nested sequence."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32)
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def _to_numpy(x: ArrayLike) -> np.ndarray:
    """Float32 NumPy array of an array, tensor (any device) or nested sequence."""
    return to_numpy(x).astype(np.float32, copy=False)


def _ratio_metric(anchors: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ratio metric of every label against every anchor, and its best over anchors.

    Args:
        anchors: (k, 2) anchor sizes in pixels.
        wh: (m, 2) label sizes in pixels.

    Returns:
        x: (m, k) fit of each label to each anchor, in (0, 1]; best: (m,) the best fit of each label.
    """
    r = wh[:, None] / anchors[None]  # (m, k, 2)
    with np.errstate(divide="ignore"):  # a zero-sized label gives r = 0, 1 / r = inf: fit 0, as intended
        x = np.minimum(r, 1 / r).min(2)  # (m, k): the worse of width and height decides
    return x, x.max(1, initial=0.0)


def anchor_fitness(anchors_px: ArrayLike, wh: ArrayLike, thr: float = 4.0) -> tuple[float, float]:
    """Best possible recall and anchors above threshold of a set of anchors on a set of label sizes.

    Args:
        anchors_px: (k, 2) anchors in pixels (any leading shape that flattens to (k, 2), e.g. (nl, na, 2)).
        wh: (m, 2) label widths and heights in pixels at the training image size.
        thr: the `anchor_t` hyperparameter; a label fits an anchor when both side ratios are within thr.

    Returns:
        bpr: fraction of labels that fit at least one anchor (YOLOv5's "Best Possible Recall").
        aat: mean number of anchors each label fits ("anchors/target"). Both are NaN when wh is empty.
    """
    wh = _to_numpy(wh).reshape(-1, 2)
    if len(wh) == 0:
        return math.nan, math.nan
    x, best = _ratio_metric(_to_numpy(anchors_px).reshape(-1, 2), wh)
    aat = (x > 1 / thr).sum(1).mean()
    bpr = (best > 1 / thr).mean()
    return float(bpr), float(aat)


def label_wh(
    shapes: ArrayLike,
    labels: Sequence[np.ndarray],
    imgsz: int,
    jitter: tuple[float, float] | None = (0.9, 1.1),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The dataset's label sizes in pixels once each image is resized so its long side is `imgsz`.

    Args:
        shapes: (N, 2) original image sizes as [width, height].
        labels: N arrays (n_i, 5) of [cls, x, y, w, h] normalised to the image (empty arrays for backgrounds).
        imgsz: training image size (long side, pixels).
        jitter: (low, high) range of a uniform scale factor drawn once per image, standing in for scale
            augmentation; None for the exact sizes.
        rng: generator for the jitter; None uses `np.random.default_rng(0)` so every process draws the same.

    Returns:
        (m, 2) float32 [w, h] in pixels, all images' labels concatenated in order.
    """
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    if len(shapes) != len(labels):
        raise ValueError(f"{len(shapes)} image shapes but {len(labels)} label arrays")
    sizes = imgsz * shapes / shapes.max(1, keepdims=True)  # (N, 2) resized image [w, h]
    if jitter is not None:
        rng = np.random.default_rng(0) if rng is None else rng
        sizes = sizes * rng.uniform(jitter[0], jitter[1], size=(len(sizes), 1))
    parts = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(sizes, labels, strict=True)]
    if not parts:
        return np.zeros((0, 2), np.float32)
    return np.concatenate(parts).astype(np.float32)


def _lloyd(points: np.ndarray, book: np.ndarray, thresh: float) -> tuple[np.ndarray, float]:
    """One k-means run from `book` until the mean distortion settles; empty clusters are dropped.

    Returns the final centroids (k', d) with k' <= k and the mean Euclidean distance of the last assignment.
    """
    previous = np.inf
    while True:
        dist = np.linalg.norm(points[:, None] - book[None], axis=2)  # (m, k)
        code = dist.argmin(1)
        distortion = float(dist[np.arange(len(points)), code].mean())
        counts = np.bincount(code, minlength=len(book))
        sums = np.zeros_like(book)
        np.add.at(sums, code, points)
        keep = counts > 0
        book = sums[keep] / counts[keep, None]
        if abs(previous - distortion) <= thresh:
            return book, distortion
        previous = distortion


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Best of `_KMEANS_RESTARTS` k-means runs, each seeded with k distinct random points.

    May return fewer than k centroids when clusters empty out (duplicate or too few points).
    """
    best_book, best_distortion = points[:0], np.inf
    for _ in range(_KMEANS_RESTARTS):
        seed_points = points[rng.choice(len(points), size=k, replace=False)]
        book, distortion = _lloyd(points, seed_points, _KMEANS_THRESH)
        if distortion < best_distortion:
            best_book, best_distortion = book, distortion
    return best_book


def _initial_anchors(wh: np.ndarray, n: int, img_size: int, rng: np.random.Generator) -> np.ndarray:
    """k-means centroids of the whitened label sizes, or sorted random sizes when k-means cannot give n."""
    if n <= len(wh):
        sigma = wh.std(0)
        if np.all(sigma > 0):  # whitening divides by it; identical sizes cannot give n distinct clusters anyway
            centroids = _kmeans(wh / sigma, n, rng) * sigma
            if len(centroids) == n:
                return centroids
    log.warning("AutoAnchor: k-means could not find %d clusters in %d labels, starting from random anchors", n, len(wh))
    return np.sort(rng.random(n * 2)).reshape(n, 2) * img_size


def _evolution_fitness(anchors: np.ndarray, wh: np.ndarray, thr: float) -> float:
    """Mean best ratio over labels, counting labels that fit no anchor as 0."""
    _, best = _ratio_metric(anchors.astype(np.float32), wh)
    return float((best * (best > 1 / thr)).mean())


def _evolve(anchors: np.ndarray, wh: np.ndarray, thr: float, gen: int, rng: np.random.Generator) -> np.ndarray:
    """Genetic evolution: multiplicative mutations of all anchors, kept when the fitness strictly improves."""
    fitness = _evolution_fitness(anchors, wh, thr)
    shape = anchors.shape
    for _ in range(gen):
        factors = np.ones(shape)
        while (factors == 1).all():  # redraw until something mutates, so no generation is wasted on a copy
            mutate = rng.random(shape) < _MUTATION_PROB
            step = rng.random() * rng.standard_normal(shape) * _MUTATION_SIGMA  # one step size per generation
            factors = (mutate * step + 1).clip(*_MUTATION_RANGE)
        child = (anchors * factors).clip(min=_MIN_WH)
        child_fitness = _evolution_fitness(child, wh, thr)
        if child_fitness > fitness:
            fitness, anchors = child_fitness, child
    return anchors


def _sort_by_area(anchors: np.ndarray) -> np.ndarray:
    return anchors[np.argsort(anchors.prod(1), kind="stable")]


def kmean_anchors(
    wh: ArrayLike,
    n: int = 9,
    img_size: int = 640,
    thr: float = 4.0,
    gen: int = 1000,
    rng: np.random.Generator | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Anchors fitted to label sizes: whitened k-means, then `gen` generations of genetic evolution.

    Labels under 2 px on both sides are left out of the fit. When k-means cannot produce n clusters (fewer labels
    than anchors, or too few distinct sizes) the evolution starts from random anchors in [0, img_size).

    Args:
        wh: (m, 2) label sizes in pixels at the training image size (see `label_wh`).
        n: number of anchors (nl * na).
        img_size: training image size, the scale of the random fallback.
        thr: the `anchor_t` hyperparameter.
        gen: generations of evolution.
        rng: generator for k-means seeds and mutations; None uses `np.random.default_rng(0)`.
        verbose: log the fit of the result.

    Returns:
        (n, 2) float32 anchors in pixels, sorted from smallest to largest area.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    wh_all = _to_numpy(wh).reshape(-1, 2)
    tiny = int((wh_all < 3.0).any(1).sum())
    if tiny:
        log.warning("AutoAnchor: %d of %d labels are under 3 pixels in size", tiny, len(wh_all))
    fit_wh = wh_all[(wh_all >= _MIN_WH).any(1)]
    anchors = _sort_by_area(_initial_anchors(fit_wh, n, img_size, rng))
    anchors = _sort_by_area(_evolve(anchors, fit_wh, thr, gen, rng)).astype(np.float32)
    if verbose:
        bpr, aat = anchor_fitness(anchors, wh_all, thr)
        sizes = ", ".join(f"{round(float(w))},{round(float(h))}" for w, h in anchors)
        log.info(
            "AutoAnchor: n=%d img_size=%d thr=%.2f: BPR %.4f, %.2f anchors/target: %s",
            n,
            img_size,
            thr,
            bpr,
            aat,
            sizes,
        )
    return anchors


def check_anchor_order(anchors: ArrayLike, stride: ArrayLike) -> torch.Tensor:
    """Anchors with their levels reversed when their mean area shrinks while the stride grows (or vice versa).

    Args:
        anchors: (nl, na, 2) anchors in pixels (grid units would mislead: the stride scales the areas).
        stride: (nl,) stride of each level.

    Returns:
        (nl, na, 2) float32 tensor, a new tensor whether flipped or not.
    """
    anchors, stride = _to_tensor(anchors), _to_tensor(stride).reshape(-1)
    area = anchors.prod(-1).mean(-1).reshape(-1)  # (nl,) mean anchor area per level
    d_area, d_stride = area[-1] - area[0], stride[-1] - stride[0]
    if d_area != 0 and torch.sign(d_area) != torch.sign(d_stride):
        return anchors.flip(0)
    return anchors.clone()


@dataclass(frozen=True)
class AnchorReport:
    """The outcome of `check_anchors`.

    Attributes:
        bpr: best possible recall of the current anchors.
        aat: anchors above threshold per label of the current anchors.
        new_anchors: (nl, na, 2) float32 anchors in grid units (pixels / stride) to adopt, or None to keep the
            current ones (already a good fit, evolution did not beat them, or no labels).
        new_bpr: best possible recall of the evolved anchors; None when no evolution ran.
    """

    bpr: float
    aat: float
    new_anchors: torch.Tensor | None
    new_bpr: float | None

    def summary(self) -> str:
        """One line for the log, in YOLOv5's wording."""
        if np.isnan(self.bpr):
            return "AutoAnchor: no labels to fit, keeping the current anchors"
        head = f"AutoAnchor: {self.aat:.2f} anchors/target, {self.bpr:.3f} Best Possible Recall (BPR). "
        if self.new_bpr is None:
            return head + "Current anchors are a good fit to dataset"
        if self.new_anchors is None:
            return head + f"Evolved anchors reach only {self.new_bpr:.3f} BPR, keeping the current anchors"
        return head + f"New anchors adopted, {self.new_bpr:.3f} BPR"


def check_anchors(
    anchors_grid: ArrayLike,
    stride: ArrayLike,
    wh: ArrayLike,
    thr: float = 4.0,
    imgsz: int = 640,
    gen: int = 1000,
    rng: np.random.Generator | None = None,
    wh_fit: ArrayLike | None = None,
) -> AnchorReport:
    """Measure the current anchors on the labels and evolve new ones when their BPR is not above 0.98.

    Args:
        anchors_grid: (nl, na, 2) current anchors in grid units, as the Detect head stores them.
        stride: (nl,) stride of each level.
        wh: (m, 2) label sizes in pixels at `imgsz` (usually jittered, see `label_wh`); the fit is judged on them.
        thr: the `anchor_t` hyperparameter.
        imgsz: training image size.
        gen: generations of evolution.
        rng: generator for k-means and evolution; None uses `np.random.default_rng(0)`.
        wh_fit: label sizes the new anchors are fitted to; defaults to `wh` (YOLOv5 fits unjittered sizes and
            judges on jittered ones).

    Returns:
        The report; `new_anchors` is set only when the evolved anchors have a strictly higher BPR on `wh`.
    """
    current = _to_tensor(anchors_grid)
    nl, na = current.shape[:2]
    strides = _to_tensor(stride).reshape(-1)
    wh = _to_numpy(wh).reshape(-1, 2)
    bpr, aat = anchor_fitness(current * strides.view(-1, 1, 1), wh, thr)
    if len(wh) == 0 or bpr > BPR_KEEP:
        return AnchorReport(bpr, aat, None, None)
    fit = wh if wh_fit is None else wh_fit
    evolved = torch.from_numpy(kmean_anchors(fit, n=nl * na, img_size=imgsz, thr=thr, gen=gen, rng=rng))
    new_bpr, _ = anchor_fitness(evolved, wh, thr)
    if not new_bpr > bpr:
        return AnchorReport(bpr, aat, None, new_bpr)
    ordered = check_anchor_order(evolved.view(nl, na, 2), strides)  # (nl, na, 2) pixels, small to large
    return AnchorReport(bpr, aat, ordered / strides.view(-1, 1, 1), new_bpr)
