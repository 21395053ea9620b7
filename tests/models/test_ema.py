"""Tests for the model EMA: decay ramp, update rule, eval mode, attributes and checkpoint round-trip."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from lightning_yolo.models.ema import ModelEMA
from lightning_yolo.optim import param_groups


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        (1, 0.9999 * 0.000499875020831),  # 1 - exp(-1/2000) = 1/2000 - 1/(2 * 2000^2) + ...
        (2000, 0.9999 * 0.632120558828558),  # 1 - 1/e
        (10**7, 0.9999),
    ],
)
def test_decay_ramps_up_to_decay(updates: int, expected: float) -> None:
    assert ModelEMA(_net()).decay_at(updates) == pytest.approx(expected, rel=1e-9)


def test_decay_and_tau_are_arguments() -> None:
    ema = ModelEMA(_net(), decay=0.99, tau=10)
    assert ema.decay_at(10) == pytest.approx(0.99 * (1 - math.exp(-1)))


def test_first_update_mixes_with_the_ramped_decay() -> None:
    model = _net(0)
    ema = ModelEMA(model)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    for key, value in ema.module.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, d * start[key] + (1 - d) * model.state_dict()[key])
    assert int(ema.updates) == 1


def test_ema_of_a_constant_model_stays_constant() -> None:
    model = _net()
    ema = ModelEMA(model)
    for _ in range(50):
        ema.update(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ema.module.state_dict()[key], value)
    assert int(ema.updates) == 50


def test_ema_leaves_integer_buffers_alone() -> None:
    model = _net()
    ema = ModelEMA(model)
    model.train()
    model(torch.rand(2, 3, 8, 8))  # BatchNorm counts a batch
    ema.update(model)
    assert int(model[1].num_batches_tracked) == 1
    assert int(ema.module[1].num_batches_tracked) == 0


def test_ema_follows_running_stats() -> None:
    model = _net()
    ema = ModelEMA(model, tau=1e-9)  # decay at its full 0.9999 from the first update
    model.train()
    model(torch.rand(2, 3, 8, 8) + 5.0)
    ema.update(model)
    expected = 0.9999 * 0.0 + (1 - 0.9999) * model[1].running_mean
    torch.testing.assert_close(ema.module[1].running_mean, expected)


def test_ema_copy_is_frozen_and_stays_in_eval_mode() -> None:
    parent = nn.Module()
    parent.model = _net()
    parent.ema = ModelEMA(parent.model)
    parent.train()
    assert parent.model.training and not parent.ema.module.training
    assert not any(p.requires_grad for p in parent.ema.parameters())
    assert all(p.requires_grad for p in parent.model.parameters())


def test_ema_registered_beside_the_model_stays_out_of_the_optimiser_groups() -> None:
    parent = nn.Module()
    parent.model = _net()
    parent.ema = ModelEMA(parent.model)
    n_groups = sum(len(g["params"]) for g in param_groups(parent, 5e-4))
    assert n_groups == len(list(parent.model.parameters()))


def test_ema_forward_runs_the_average() -> None:
    model = _net()
    ema = ModelEMA(model)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(ema(x), model.eval()(x))


def test_state_dict_round_trips_through_weights_only_load() -> None:
    model = _net(0)
    ema = ModelEMA(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    for _ in range(3):
        ema.update(model)
    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert "updates" in state
    restored = ModelEMA(_net(1))
    restored.load_state_dict(state)
    assert int(restored.updates) == 3
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value)


def test_parent_state_dict_holds_ema_and_its_update_count() -> None:
    parent = nn.Module()
    parent.model = _net()
    parent.ema = ModelEMA(parent.model, updates=7)
    keys = parent.state_dict().keys()
    assert "ema.updates" in keys and "ema.module.0.weight" in keys
    assert int(parent.state_dict()["ema.updates"]) == 7


def test_update_attr_copies_plain_attributes_only() -> None:
    model = _net()
    ema = ModelEMA(model)
    model.names = ["cat", "dog"]
    model.stride = torch.tensor([8.0, 16.0, 32.0])
    model._private = 1
    model.train()
    ema.update_attr(model)
    assert ema.module.names == ["cat", "dog"]
    torch.testing.assert_close(ema.module.stride, model.stride)
    assert not hasattr(ema.module, "_private")
    assert not ema.module.training


def test_update_attr_include_limits_the_copy() -> None:
    model = _net()
    ema = ModelEMA(model)
    model.names, model.nc = ["a"], 1
    ema.update_attr(model, include=("names",))
    assert ema.module.names == ["a"]
    assert not hasattr(ema.module, "nc")
