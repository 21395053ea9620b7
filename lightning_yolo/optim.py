"""The YOLOv5 optimisation recipe as small pure pieces: parameter groups, optimiser, LR lambdas, warmup, accumulation.

:class:`~lightning_yolo.module.YOLOModule` drives them with manual optimisation, because YOLOv5 accumulates
gradients towards a nominal batch of 64 without dividing the loss, and ramps the accumulation count during warmup.
Nothing here knows about Lightning; the module's docstring says which hook calls what.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_yolo.settings import OPTIMIZERS

NOMINAL_BATCH_SIZE = 64
"""The batch size that the YOLOv5 hyperparameters were tuned for; smaller batches accumulate towards it."""

BIAS_GROUP, DECAY_GROUP, NORM_GROUP = 0, 1, 2
"""Indices of the optimiser's parameter groups: biases, weights with decay, norm-layer weights."""


@functools.cache
def _norm_types() -> tuple[type, ...]:
    """Every torch.nn class with "Norm" in its name: BatchNorm*, SyncBatchNorm, GroupNorm, LayerNorm, RMSNorm, ..."""
    return tuple(cls for name, cls in vars(nn).items() if "Norm" in name and isinstance(cls, type))


def _is_norm_layer(module: nn.Module) -> bool:
    """True for a torch.nn normalisation layer or a subclass of one."""
    return isinstance(module, _norm_types())


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into the three YOLOv5 optimiser groups, in YOLOv5's optimiser order.

    A parameter named ``bias`` goes to group 0, the ``weight`` of a normalisation layer to group 2, every other
    parameter to group 1. Only group 1 is decayed. Parameters with ``requires_grad=False`` (frozen layers, an EMA
    copy registered beside the model) are left out; a parameter reachable twice is listed once.

    Args:
        model: the network whose parameters are optimised.
        weight_decay: L2 decay for group 1 (already scaled, see `scaled_weight_decay`).

    Returns:
        Three dicts ``{"params", "weight_decay", "name"}`` at indices `BIAS_GROUP`, `DECAY_GROUP`, `NORM_GROUP`;
        a group may hold no parameters, so the indices stay fixed.
    """
    groups: list[list[nn.Parameter]] = [[], [], []]
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if name == "bias":
                groups[BIAS_GROUP].append(param)
            elif name == "weight" and _is_norm_layer(module):
                groups[NORM_GROUP].append(param)
            else:
                groups[DECAY_GROUP].append(param)
    decays = {BIAS_GROUP: 0.0, DECAY_GROUP: weight_decay, NORM_GROUP: 0.0}
    names = {BIAS_GROUP: "bias", DECAY_GROUP: "weight", NORM_GROUP: "norm_weight"}
    return [{"params": groups[i], "weight_decay": decays[i], "name": names[i]} for i in range(3)]


def build_optimizer(
    model: nn.Module,
    name: str = "SGD",
    lr: float = 0.01,
    momentum: float = 0.937,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """Build the optimiser over `param_groups` of ``model``.

    Args:
        model: the network to optimise.
        name: one of ``SGD`` (Nesterov), ``Adam``, ``AdamW``, ``RMSProp`` (case-insensitive).
        lr: initial learning rate ``lr0`` of every group.
        momentum: SGD/RMSProp momentum, or Adam/AdamW beta1 (beta2 is 0.999).
        weight_decay: decay of the non-norm weights only; biases and norm weights get none, with every optimiser
            (AdamW's own default decay of 0.01 never applies).

    Raises:
        ValueError: unknown ``name``.
    """
    groups = param_groups(model, weight_decay)
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999))
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    if key == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _linear_lr(epoch: float, epochs: int, lrf: float) -> float:
    return (1 - epoch / epochs) * (1.0 - lrf) + lrf


def _cosine_lr(epoch: float, epochs: int, lrf: float) -> float:
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


def lr_lambda(epochs: int, lrf: float, cos: bool = False) -> Callable[[int], float]:
    """The per-epoch LR multiplier: 1 at epoch 0 falling to ``lrf`` at epoch ``epochs``.

    Linear: ``(1 - x / E) * (1 - lrf) + lrf``; cosine (one cycle): ``((1 - cos(pi x / E)) / 2) * (lrf - 1) + 1``.
    The result is a picklable ``functools.partial``; ``LambdaLR`` does not store it in its state_dict, so a resumed
    run uses the current ``epochs`` and ``lrf``.

    Raises:
        ValueError: ``epochs`` < 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return functools.partial(_cosine_lr if cos else _linear_lr, epochs=epochs, lrf=lrf)


def build_scheduler(optimizer: torch.optim.Optimizer, lf: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` stepped once per epoch; it records each group's ``initial_lr`` that `apply_warmup` ramps to."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)


def nominal_accumulate(batch_size: int, nbs: int = NOMINAL_BATCH_SIZE) -> int:
    """Batches per optimiser step after warmup: ``max(round(nbs / batch_size), 1)`` (round half to even).

    Args:
        batch_size: the global batch size (all DDP ranks together).
        nbs: nominal batch size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(round(nbs / batch_size), 1)


def scaled_weight_decay(weight_decay: float, batch_size: int, accumulate: int, nbs: int = NOMINAL_BATCH_SIZE) -> float:
    """Weight decay scaled to the images per optimiser step: ``weight_decay * batch_size * accumulate / nbs``.

    ``batch_size`` is the global batch size; ``accumulate`` is normally ``nominal_accumulate(batch_size, nbs)``.
    """
    return weight_decay * batch_size * accumulate / nbs


def warmup_iters(warmup_epochs: float, batches_per_epoch: float, min_iters: int = 100) -> int:
    """Warmup length in iterations: ``max(round(warmup_epochs * batches_per_epoch), min_iters)``.

    Raises:
        ValueError: ``batches_per_epoch`` is not finite (Lightning's ``num_training_batches`` before the train
            dataloader is loaded, e.g. in ``on_fit_start``; read it in ``on_train_start``).
    """
    if not math.isfinite(batches_per_epoch):
        raise ValueError(f"batches_per_epoch must be finite, got {batches_per_epoch}")
    return max(round(warmup_epochs * batches_per_epoch), min_iters)


def _ramp(ni: int, nw: int, start: float, end: float) -> float:
    """Linear ramp from ``start`` at iteration 0 to ``end`` at ``nw``, held at the ends (as ``np.interp``)."""
    return float(np.interp(ni, [0, nw], [start, end]))


def warmup_accumulate(ni: int, nw: int, batch_size: int, nbs: int = NOMINAL_BATCH_SIZE) -> int:
    """Accumulation count during warmup: ``max(1, round(ramp from 1 to nbs / batch_size)))`` (half to even)."""
    return max(1, int(np.round(_ramp(ni, nw, 1.0, nbs / batch_size))))


def apply_warmup(
    optimizer: torch.optim.Optimizer,
    ni: int,
    nw: int,
    epoch: int,
    lf: Callable[[int], float],
    warmup_bias_lr: float = 0.1,
    momentum: float = 0.937,
    warmup_momentum: float = 0.8,
    *,
    bias_group: int = BIAS_GROUP,
) -> bool:
    """Set each group's lr (and momentum) for warmup iteration ``ni``; do nothing once ``ni > nw``.

    The bias group's lr falls linearly from ``warmup_bias_lr``, the others rise from 0, each to its
    ``initial_lr * lf(epoch)`` at ``ni = nw`` (``initial_lr`` is set when the LR scheduler is built, so build it
    first). Groups with a ``momentum`` entry (SGD, RMSProp) get the momentum ramp from ``warmup_momentum`` to
    ``momentum``; Adam/AdamW beta1 stays at ``momentum``, as in YOLOv5.

    Args:
        optimizer: the raw torch optimiser (``LightningOptimizer.optimizer``, or the wrapper itself).
        ni: iterations since the start of training (``batch_idx + batches_per_epoch * epoch``).
        nw: warmup length from `warmup_iters`.
        epoch: current epoch (0-based), the argument of ``lf``.
        lf: per-epoch multiplier from `lr_lambda`.
        warmup_bias_lr: bias-group lr at ``ni = 0``.
        momentum: momentum after warmup.
        warmup_momentum: momentum at ``ni = 0``.
        bias_group: index of the bias group.

    Returns:
        True when the settings were changed (``ni <= nw``).

    Raises:
        KeyError: a group has no ``initial_lr`` (no scheduler built yet).
    """
    if ni > nw:
        return False
    m = _ramp(ni, nw, warmup_momentum, momentum)
    for j, group in enumerate(optimizer.param_groups):
        if "initial_lr" not in group:
            raise KeyError("parameter group has no 'initial_lr'; build the LR scheduler before apply_warmup")
        group["lr"] = _ramp(ni, nw, warmup_bias_lr if j == bias_group else 0.0, group["initial_lr"] * lf(epoch))
        if "momentum" in group:
            group["momentum"] = m
    return True


@dataclass
class AccumulationSchedule:
    """Decides on which iterations the optimiser steps, exactly as YOLOv5 does.

    The optimiser steps at iteration ``ni`` when ``ni - last_opt_step >= accumulate(ni)``, where ``accumulate`` is
    `warmup_accumulate` while ``ni <= warmup_iters`` and `nominal_accumulate` after. Training starts with
    ``last_opt_step = -1`` so iteration 0 steps.

    Resume: `state_dict` holds ``last_opt_step`` and the last iteration seen. After `load_state_dict` the first
    `step_now` keeps the number of iterations since the last step, so a run resumed at the next iteration steps
    exactly where the uninterrupted run would have, and a run whose iteration numbering changed (a different
    number of batches per epoch) does not wait for an old step index.

    Elastic batch size: ``batch_size`` and ``warmup_iters`` are never restored from a state_dict. Build the schedule
    from the current global batch size and batches per epoch; the accumulation count then follows the new batch
    size (e.g. 16 -> 4 batches per step, 32 -> 2), keeping about ``nbs`` images per step.
    """

    batch_size: int
    """Global batch size (all DDP ranks together)."""
    warmup_iters: int
    """Warmup length in iterations (`warmup_iters`)."""
    nbs: int = NOMINAL_BATCH_SIZE
    """Nominal batch size."""
    last_opt_step: int = -1
    """Iteration of the last optimiser step."""
    last_seen: int = -1
    """Last iteration passed to `step_now`."""
    _rebase: bool = field(default=False, init=False, repr=False)

    def accumulate(self, ni: int) -> int:
        """Batches per optimiser step at iteration ``ni``."""
        if ni <= self.warmup_iters:
            return warmup_accumulate(ni, self.warmup_iters, self.batch_size, self.nbs)
        return nominal_accumulate(self.batch_size, self.nbs)

    def should_step(self, ni: int) -> bool:
        """Whether iteration ``ni`` ends an accumulation (a pure query; see `step_now`)."""
        return ni - self.last_opt_step >= self.accumulate(ni)

    def step_now(self, ni: int) -> bool:
        """Record iteration ``ni`` (call once per training batch, after backward) and say whether to step now."""
        if self._rebase:
            self.last_opt_step = ni - 1 - (self.last_seen - self.last_opt_step)
            self._rebase = False
        self.last_seen = ni
        if not self.should_step(ni):
            return False
        self.last_opt_step = ni
        return True

    def state_dict(self) -> dict[str, int]:
        """Plain ints, safe for ``torch.load(weights_only=True)``."""
        return {"last_opt_step": self.last_opt_step, "last_seen": self.last_seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore from `state_dict`; the next `step_now` re-anchors ``last_opt_step`` to the iteration it gets."""
        self.last_opt_step = int(state["last_opt_step"])
        self.last_seen = int(state["last_seen"])
        self._rebase = self.last_seen >= 0
