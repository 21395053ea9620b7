"""Tests for the YOLOv5 optimisation recipe: groups, optimisers, LR lambdas, warmup and accumulation."""

from __future__ import annotations

import io
import math
import pickle
from fractions import Fraction

import pytest
import torch
from torch import nn

from lightning_yolo.optim import (
    BIAS_GROUP,
    DECAY_GROUP,
    NORM_GROUP,
    AccumulationSchedule,
    apply_warmup,
    build_optimizer,
    build_scheduler,
    lr_lambda,
    nominal_accumulate,
    param_groups,
    scaled_weight_decay,
    warmup_accumulate,
    warmup_iters,
)


class TinyNet(nn.Module):
    """Conv (no bias) + BN + SiLU, then a 1x1 conv with bias, like a YOLOv5 Conv followed by a Detect layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.SiLU()
        self.head = nn.Conv2d(4, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.bn(self.conv(x))))


def _ids(params: list[torch.Tensor]) -> set[int]:
    return {id(p) for p in params}


# ----------------------------------------------------------------------------------------------- parameter groups
def test_param_groups_put_bn_weight_in_norm_group_and_all_biases_in_bias_group() -> None:
    net = TinyNet()
    groups = param_groups(net, 5e-4)
    assert len(groups) == 3
    assert _ids(groups[BIAS_GROUP]["params"]) == {id(net.bn.bias), id(net.head.bias)}
    assert _ids(groups[DECAY_GROUP]["params"]) == {id(net.conv.weight), id(net.head.weight)}
    assert _ids(groups[NORM_GROUP]["params"]) == {id(net.bn.weight)}


def test_param_groups_bias_group_comes_first_as_in_yolov5() -> None:
    # YOLOv5 builds the optimiser from the biases and adds decayed weights, then norm weights; warmup treats
    # group index 0 as the bias group.
    assert (BIAS_GROUP, DECAY_GROUP, NORM_GROUP) == (0, 1, 2)


def test_param_groups_decay_only_non_norm_weights() -> None:
    groups = param_groups(TinyNet(), 1e-3)
    assert [g["weight_decay"] for g in groups] == [0.0, 1e-3, 0.0]


def test_param_groups_skip_frozen_parameters() -> None:
    net = TinyNet()
    net.conv.requires_grad_(False)
    net.bn.requires_grad_(False)
    groups = param_groups(net, 5e-4)
    assert _ids(groups[BIAS_GROUP]["params"]) == {id(net.head.bias)}
    assert _ids(groups[DECAY_GROUP]["params"]) == {id(net.head.weight)}
    assert groups[NORM_GROUP]["params"] == []


def test_param_groups_treat_every_norm_layer_as_norm() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GroupNorm(2, 4), nn.SyncBatchNorm(4))
    groups = param_groups(net, 5e-4)
    assert _ids(groups[NORM_GROUP]["params"]) == {id(net[i].weight) for i in (1, 2, 3)}
    assert _ids(groups[DECAY_GROUP]["params"]) == {id(net[0].weight)}
    assert len(groups[BIAS_GROUP]["params"]) == 4


def test_param_groups_list_a_shared_parameter_once() -> None:
    a = nn.Linear(2, 2)
    net = nn.Sequential(a, a)
    groups = param_groups(net, 5e-4)
    assert sum(len(g["params"]) for g in groups) == 2


def test_param_groups_keep_an_empty_norm_group_so_indices_stay_fixed() -> None:
    opt = build_optimizer(nn.Linear(3, 2))
    assert len(opt.param_groups) == 3
    assert opt.param_groups[NORM_GROUP]["params"] == []


# ----------------------------------------------------------------------------------------------------- optimisers
def test_build_optimizer_sgd_is_nesterov_with_momentum_and_group_decay() -> None:
    opt = build_optimizer(TinyNet(), "SGD", lr=0.01, momentum=0.937, weight_decay=5e-4)
    assert isinstance(opt, torch.optim.SGD)
    for group in opt.param_groups:
        assert group["nesterov"] is True
        assert group["momentum"] == 0.937
        assert group["lr"] == 0.01
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]


def test_build_optimizer_adamw_has_no_default_decay_and_decays_weights_per_group() -> None:
    opt = build_optimizer(TinyNet(), "AdamW", lr=0.001, momentum=0.9, weight_decay=5e-4)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["weight_decay"] == 0.0
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]
    assert all(g["betas"] == (0.9, 0.999) for g in opt.param_groups)


def test_build_optimizer_adam_uses_momentum_as_beta1() -> None:
    opt = build_optimizer(TinyNet(), "adam", lr=0.001, momentum=0.8)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.8, 0.999) for g in opt.param_groups)


def test_build_optimizer_rmsprop_has_momentum() -> None:
    opt = build_optimizer(TinyNet(), "RMSProp", momentum=0.9)
    assert isinstance(opt, torch.optim.RMSprop)
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)


def test_build_optimizer_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(TinyNet(), "Lion")


def test_sgd_step_decays_only_the_decay_group() -> None:
    # With zero gradients, a step moves a parameter only through weight decay.
    net = TinyNet()
    opt = build_optimizer(net, "SGD", lr=0.1, momentum=0.5, weight_decay=0.5)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in net.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (name in {"conv.weight", "head.weight"}), name


# ------------------------------------------------------------------------------------------------------ LR lambdas
@pytest.mark.parametrize("cos", [False, True])
def test_lr_lambda_runs_from_one_to_lrf(cos: bool) -> None:
    lf = lr_lambda(300, 0.01, cos=cos)
    assert lf(0) == pytest.approx(1.0)
    # Half way both schedules sit at the midpoint (1 + 0.01) / 2.
    assert lf(150) == pytest.approx(0.505)
    assert lf(300) == pytest.approx(0.01)


def test_lr_lambda_linear_and_cosine_differ_at_a_quarter() -> None:
    # Linear: 1 - 0.25 * 0.9 = 0.775. Cosine: (1 - cos(pi/4)) / 2 = 0.1464466..., so 1 - 0.9 * 0.1464466 = 0.868198.
    assert lr_lambda(100, 0.1)(25) == pytest.approx(0.775)
    assert lr_lambda(100, 0.1, cos=True)(25) == pytest.approx(1 - 0.9 * (1 - math.sqrt(0.5)) / 2)


def test_lr_lambda_is_picklable_and_rejects_zero_epochs() -> None:
    lf = pickle.loads(pickle.dumps(lr_lambda(10, 0.2, cos=True)))
    assert lf(10) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        lr_lambda(0, 0.01)


def test_scheduler_scales_lr_per_epoch_and_saves_plain_state() -> None:
    opt = build_optimizer(TinyNet(), lr=0.01)
    sched = build_scheduler(opt, lr_lambda(10, 0.1))
    assert all(g["initial_lr"] == 0.01 and g["lr"] == pytest.approx(0.01) for g in opt.param_groups)
    opt.step()
    sched.step()
    assert all(g["lr"] == pytest.approx(0.01 * (0.9 * 0.9 + 0.1)) for g in opt.param_groups)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["last_epoch"] == 1


# ------------------------------------------------------------------------------------------ nominal batch size
@pytest.mark.parametrize(("batch_size", "expected"), [(16, 4), (64, 1), (128, 1), (20, 3), (1, 64), (32, 2), (24, 3)])
def test_nominal_accumulate(batch_size: int, expected: int) -> None:
    assert nominal_accumulate(batch_size) == expected


def test_nominal_accumulate_rejects_nonpositive_batch() -> None:
    with pytest.raises(ValueError):
        nominal_accumulate(0)


@pytest.mark.parametrize(
    ("batch_size", "accumulate", "expected"),
    [(16, 4, 5e-4), (20, 3, 5e-4 * 60 / 64), (128, 1, 1e-3), (64, 1, 5e-4)],
)
def test_scaled_weight_decay(batch_size: int, accumulate: int, expected: float) -> None:
    assert scaled_weight_decay(5e-4, batch_size, accumulate) == pytest.approx(expected)


# -------------------------------------------------------------------------------------------------------- warmup
def test_warmup_iters_has_a_floor_of_100() -> None:
    assert warmup_iters(3.0, 20) == 100
    assert warmup_iters(3.0, 1000) == 3000
    assert warmup_iters(0.0, 1000) == 100
    assert warmup_iters(0.5, 301, min_iters=0) == 150  # round half to even, as Python's round


def _sgd_with_scheduler(lf) -> torch.optim.Optimizer:
    opt = build_optimizer(TinyNet(), "SGD", lr=0.01, momentum=0.937)
    build_scheduler(opt, lf)
    return opt


def _warmed(ni: int, nw: int, epoch: int) -> tuple[list[float], list[float]]:
    """Group lrs and momenta of a fresh SGD (lr0 0.01, momentum 0.937) after warmup iteration ``ni``."""
    lf = lr_lambda(300, 0.01)
    opt = _sgd_with_scheduler(lf)
    apply_warmup(opt, ni, nw, epoch, lf, 0.1, 0.937, 0.8)
    return [g["lr"] for g in opt.param_groups], [g["momentum"] for g in opt.param_groups]


def test_warmup_starts_with_bias_lr_and_low_momentum() -> None:
    lrs, momenta = _warmed(0, 100, 0)
    assert lrs == [0.1, 0.0, 0.0]
    assert momenta == pytest.approx([0.8] * 3)
    assert warmup_accumulate(0, 100, 16) == 1


def test_warmup_reaches_scheduled_values_at_nw() -> None:
    target = 0.01 * ((1 - 2 / 300) * 0.99 + 0.01)
    lrs, momenta = _warmed(100, 100, 2)
    assert lrs == pytest.approx([target] * 3)
    assert momenta == pytest.approx([0.937] * 3)
    assert warmup_accumulate(100, 100, 16) == 4


def test_warmup_half_way() -> None:
    lrs, momenta = _warmed(50, 100, 0)
    assert lrs == pytest.approx([0.055, 0.005, 0.005])
    assert momenta == pytest.approx([0.8685] * 3)
    assert warmup_accumulate(50, 100, 16) == 2  # 2.5 rounds half to even


@pytest.mark.parametrize(("batch_size", "nw"), [(16, 100), (20, 100), (8, 300), (128, 100), (1, 100)])
def test_warmup_accumulate_ramps_from_one_to_nominal(batch_size: int, nw: int) -> None:
    for ni in range(nw + 1):
        # Exact rational ramp from 1 to 64 / batch_size, rounded half to even.
        exact = 1 + Fraction(ni, nw) * (Fraction(64, batch_size) - 1)
        assert warmup_accumulate(ni, nw, batch_size) == max(1, round(exact)), ni
    assert warmup_accumulate(0, nw, batch_size) == 1
    assert warmup_accumulate(nw, nw, batch_size) == nominal_accumulate(batch_size)


def test_apply_warmup_is_a_no_op_after_warmup() -> None:
    lf = lr_lambda(300, 0.01)
    opt = _sgd_with_scheduler(lf)
    assert not apply_warmup(opt, 101, 100, 1, lf)
    assert [g["lr"] for g in opt.param_groups] == [0.01] * 3
    assert all(g["momentum"] == 0.937 for g in opt.param_groups)


def test_apply_warmup_needs_the_scheduler() -> None:
    opt = build_optimizer(TinyNet())
    with pytest.raises(KeyError, match="initial_lr"):
        apply_warmup(opt, 0, 100, 0, lr_lambda(10, 0.01))


def test_apply_warmup_leaves_adam_beta1() -> None:
    lf = lr_lambda(300, 0.01)
    opt = build_optimizer(TinyNet(), "Adam", lr=0.001, momentum=0.937)
    build_scheduler(opt, lf)
    apply_warmup(opt, 0, 100, 0, lf)
    assert all(g["betas"] == (0.937, 0.999) for g in opt.param_groups)  # YOLOv5 warms SGD momentum only


# --------------------------------------------------------------------------------------------- accumulation stepper
def _expected_steps(n_iters: int, batch_size: int, nw: int, nbs: int = 64) -> list[int]:
    """The PARITY rule written out directly: step when iterations since the last step reach accumulate."""
    steps, last = [], -1
    for ni in range(n_iters):
        if ni <= nw:
            accumulate = max(1, round(1 + Fraction(ni, nw) * (Fraction(nbs, batch_size) - 1)))
        else:
            accumulate = max(round(nbs / batch_size), 1)
        if ni - last >= accumulate:
            steps.append(ni)
            last = ni
    return steps


def _run(schedule: AccumulationSchedule, iters: range) -> list[int]:
    return [ni for ni in iters if schedule.step_now(ni)]


@pytest.mark.parametrize("batch_size", [16, 20, 64, 128, 8])
def test_stepper_follows_yolov5_step_pattern_for_300_iterations(batch_size: int) -> None:
    nw = warmup_iters(3.0, 20)  # 20 batches per epoch -> 100 warmup iterations
    got = _run(AccumulationSchedule(batch_size, nw), range(300))
    assert got == _expected_steps(300, batch_size, nw)


def test_stepper_pattern_at_batch_16_steps_every_4_after_warmup() -> None:
    got = _run(AccumulationSchedule(16, 100), range(300))
    assert got[:3] == [0, 1, 2]
    after = [ni for ni in got if ni > 100]
    assert all(b - a == 4 for a, b in zip(after, after[1:], strict=False))
    assert len(after) > 40


def test_stepper_should_step_is_a_pure_query() -> None:
    schedule = AccumulationSchedule(16, 100)
    assert schedule.should_step(0) and schedule.should_step(0)
    assert schedule.last_opt_step == -1


def test_stepper_state_dict_round_trip_resumes_the_same_pattern() -> None:
    full = _run(AccumulationSchedule(16, 100), range(300))
    first = AccumulationSchedule(16, 100)
    head = _run(first, range(157))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    second = AccumulationSchedule(16, 100)
    second.load_state_dict(torch.load(buf, weights_only=True))
    assert head + _run(second, range(157, 300)) == full


def test_stepper_resume_with_renumbered_iterations_keeps_progress() -> None:
    first = AccumulationSchedule(16, 100)
    _run(first, range(203))
    since_last = first.last_seen - first.last_opt_step
    second = AccumulationSchedule(16, 100)
    second.load_state_dict(first.state_dict())
    # Fewer batches per epoch after a restart: the iteration index went backwards.
    got = _run(second, range(150, 170))
    assert got[0] == 150 - 1 - since_last + 4
    assert all(b - a == 4 for a, b in zip(got, got[1:], strict=False))


def test_stepper_elastic_batch_size_recomputes_accumulate() -> None:
    first = AccumulationSchedule(16, 100)
    _run(first, range(200))
    second = AccumulationSchedule(32, 100)
    second.load_state_dict(first.state_dict())
    got = _run(second, range(200, 220))
    assert all(b - a == 2 for a, b in zip(got, got[1:], strict=False))
    assert second.batch_size == 32 and second.accumulate(500) == 2


def test_warmup_iters_rejects_unknown_batch_count() -> None:
    # Lightning reports num_training_batches as inf before the train dataloader is loaded.
    with pytest.raises(ValueError, match="finite"):
        warmup_iters(3.0, float("inf"))
