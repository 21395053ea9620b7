"""YOLOv5's genetic algorithm as a Ray Tune searcher.

Each suggestion draws from its own seeded generator (the seed and the suggestion's number), so a tune is
reproducible under a seed when trials run one at a time; with several at once, which results are finished when a
suggestion is made depends on timing. The first suggestion is the starting hyperparameters unchanged (YOLOv5's first
generation); a suggestion made before any trial has finished mutates the starting hyperparameters.

The state (finished results, pending suggestions, the suggestion count) is saved as JSON with Ray Tune's
experiment state, so a restored experiment continues from the finished trials' results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from lightning_yolo.evaluation.ap import fitness as fitness_of
from lightning_yolo.tune.evolve import ParentMethod, constrain, next_generation
from lightning_yolo.tune.space import SearchSpace


def trial_fitness(result: dict[str, Any]) -> float | None:
    """A trial's fitness from its last reported result (None when it reported no mAP)."""
    if result is None or "metrics/mAP_0.5" not in result or "metrics/mAP_0.5:0.95" not in result:
        return None
    return float(fitness_of(float(result["metrics/mAP_0.5"]), float(result["metrics/mAP_0.5:0.95"])))


class EvolveSearcher(Searcher):
    """Suggests hyperparameters by YOLOv5's evolution from the results of finished trials.

    Args:
        space: The searched keys with their gains and limits.
        base: The starting hyperparameters (the fit config's values of ``space.keys``).
        seed: Seed of the mutation and parent draws.
        parent: YOLOv5's parent selection, ``single`` or ``weighted``.
        metric, mode: Ray Tune's; fitness is maximised.
    """

    def __init__(
        self,
        space: SearchSpace,
        base: dict[str, float],
        seed: int = 0,
        parent: ParentMethod = "single",
        metric: str = "fitness",
        mode: str = "max",
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space, self.base, self.seed, self.parent = space, dict(base), int(seed), parent
        self.suggested = 0
        self.pending: dict[str, list[float]] = {}
        self.finished: list[dict[str, Any]] = []  # {"trial_id", "hyp": [...], "fitness"}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space is this searcher's own; Tune's metric and mode are fitness / max

    def suggest(self, trial_id: str) -> dict[str, float]:
        rng = np.random.RandomState([self.seed % 2**32, self.suggested])
        space = self.space
        base = space.vector(self.base)
        if self.finished:
            hyps = np.array([r["hyp"] for r in self.finished])
            fitness = np.array([r["fitness"] for r in self.finished])
            genes = next_generation(hyps, fitness, space.gains, space.lower, space.upper, rng, self.parent)
        elif self.suggested == 0:
            genes = constrain(base, space.lower, space.upper)
        else:  # before any result: mutate the start
            genes = next_generation(base[None], np.zeros(1), space.gains, space.lower, space.upper, rng)
        self.suggested += 1
        self.pending[trial_id] = [float(v) for v in genes]
        return space.as_dict(genes)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        genes = self.pending.pop(trial_id, None)
        value = None if error else trial_fitness(result)
        if genes is not None and value is not None:
            self.finished.append({"trial_id": trial_id, "hyp": genes, "fitness": value})

    def get_state(self) -> dict[str, Any]:
        return {"suggested": self.suggested, "pending": self.pending, "finished": self.finished}

    def set_state(self, state: dict[str, Any]) -> None:
        self.suggested = int(state["suggested"])
        self.pending = {str(k): [float(x) for x in v] for k, v in state["pending"].items()}
        self.finished = [
            {"trial_id": str(r["trial_id"]), "hyp": [float(x) for x in r["hyp"]], "fitness": float(r["fitness"])}
            for r in state["finished"]
        ]

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))
