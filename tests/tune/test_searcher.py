"""The GA searcher for Ray Tune: YOLOv5's first generation, seeded suggestions, state that survives a restart."""

from __future__ import annotations

import pytest

from lightning_yolo.tune.space import search_space

pytest.importorskip("ray")
from lightning_yolo.tune.searcher import EvolveSearcher  # noqa: E402

BASE = {"lr0": 0.01, "momentum": 0.937, "fl_gamma": 0.0, "hsv_h": 0.015, "mosaic": 1.0}


def _result(map50: float, map_: float) -> dict:
    return {"metrics/mAP_0.5": map50, "metrics/mAP_0.5:0.95": map_}


def _searcher(seed: int = 0) -> EvolveSearcher:
    return EvolveSearcher(search_space(list(BASE)), BASE, seed=seed)


def test_first_suggestion_is_the_start_and_later_ones_mutate_it():
    searcher = _searcher()
    assert searcher.suggest("a") == BASE
    second = searcher.suggest("b")
    assert second != BASE and second["fl_gamma"] == 0.0  # gain 0: never mutated


def test_same_seed_same_suggestions_other_seed_other():
    def run(seed: int) -> list[dict]:
        searcher, out = _searcher(seed), []
        for i in range(4):
            out.append(searcher.suggest(f"t{i}"))
            searcher.on_trial_complete(f"t{i}", _result(0.1 * i, 0.05 * i))
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_restored_state_continues_like_the_original(tmp_path):
    original = _searcher(5)
    for i in range(3):
        original.suggest(f"t{i}")
    original.on_trial_complete("t0", _result(0.3, 0.2))
    original.on_trial_complete("t1", _result(0.4, 0.1))
    original.on_trial_complete("t2", error=True)
    original.save(str(tmp_path / "state"))
    restored = _searcher(5)
    restored.restore(str(tmp_path / "state"))
    assert restored.suggest("t3") == original.suggest("t3")
    assert [r["trial_id"] for r in restored.finished] == ["t0", "t1"]


def test_a_new_experiment_continues_from_recorded_trials(tmp_path):
    pytest.importorskip("optuna")
    from lightning_yolo.tune.engine import TuneJob, make_scheduler, make_searcher
    from lightning_yolo.tune.options import TuneOptions
    from lightning_yolo.tune.results import TrialRecord
    from lightning_yolo.tune.trial import TrialPlan

    space = search_space(list(BASE))
    plan = TrialPlan((), str(tmp_path), str(tmp_path / "trials"), BASE, {k: "model" for k in BASE}, epochs=3)
    done = [TrialRecord("a", (0, 0, 0.4, 0.2, 0, 0, 0), {**BASE, "lr0": 0.02})]
    ga = make_searcher(TuneJob(TuneOptions(), space, BASE, plan, tmp_path), done)
    assert ga.suggested == 1 and ga.finished[0]["fitness"] == pytest.approx(0.1 * 0.4 + 0.9 * 0.2)
    optuna = make_searcher(TuneJob(TuneOptions(searcher="optuna"), space, BASE, plan, tmp_path), done)
    assert optuna._points_to_evaluate == [{"lr0": 0.02, "momentum": 0.937, "hsv_h": 0.015, "mosaic": 1.0}]
    assert make_scheduler(TuneOptions(), 3) is None
    assert make_scheduler(TuneOptions(asha=True, grace_period=5), 3)._max_t == 3


def test_keys_a_searcher_leaves_out_are_recorded_at_their_fit_values(tmp_path):
    # Optuna varies only the mutable keys (fl_gamma has gain 0): the trial's fit ran with fl_gamma from the fit
    # config, and the record, evolve.csv and the fragment must say so rather than fail on the missing key.
    from types import SimpleNamespace

    from lightning_yolo.tune.engine import RecordTrials
    from lightning_yolo.tune.results import load_records
    from lightning_yolo.tune.trial import METRIC_KEYS

    space = search_space(list(BASE))
    base = {**BASE, "fl_gamma": 1.5}
    callback = RecordTrials(tmp_path, space, trials=1, trials_dir=str(tmp_path / "trials"), base=base)
    metrics = dict(zip(METRIC_KEYS, [0.5, 0.4, 0.3, 0.2, 0.05, 0.02, 0.01], strict=True))
    trial = SimpleNamespace(trial_id="t1", last_result=metrics, config={"lr0": 0.02, "momentum": 0.9})
    callback.on_trial_complete(0, [], trial)
    (record,) = load_records(tmp_path)
    assert record.hyp == {"lr0": 0.02, "momentum": 0.9, "fl_gamma": 1.5, "hsv_h": 0.015, "mosaic": 1.0}
    assert (tmp_path / "evolve.csv").read_text().count("\n") == 2
