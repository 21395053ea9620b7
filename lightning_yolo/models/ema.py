"""Exponential moving average of a model's weights, used for validation and saved weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class ModelEMA(nn.Module):
    """A moving average of every floating-point state entry (parameters and buffers) of a model.

    The average lives in ``self.module``, a deep copy of the model kept in eval mode with ``requires_grad=False``.
    After ``n`` updates the decay is ``decay * (1 - exp(-n / tau))``, so early updates follow the model closely.
    The update count is the buffer ``updates``: registered as a submodule of a LightningModule, the whole average
    (``ema.module.*`` and ``ema.updates``) is saved in and restored from the checkpoint's state_dict, all plain
    tensors that load with ``torch.load(weights_only=True)``.

    Args:
        model: the model to average (not a DDP wrapper; Lightning hands the module its unwrapped model).
        decay: decay once many updates have been made.
        tau: number of updates over which the decay ramps up (reaches ``1 - 1/e`` of ``decay``).
        updates: updates already made (to continue an average).
    """

    updates: torch.Tensor

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.register_buffer("updates", torch.tensor(updates, dtype=torch.long))

    def decay_at(self, updates: int) -> float:
        """The decay used by the update that brings the count to ``updates``."""
        return self.decay * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current state into the average: ``ema = d * ema + (1 - d) * model`` per float entry.

        Integer entries (e.g. BatchNorm's ``num_batches_tracked``) keep the value from the copy.

        Raises:
            KeyError: ``model`` lacks a state entry of the average (a different architecture).
        """
        self.updates += 1
        d = self.decay_at(int(self.updates))
        current = model.state_dict()
        averages, values = [], []
        for key, avg in self.module.state_dict().items():
            if avg.dtype.is_floating_point:
                averages.append(avg)
                values.append(current[key].detach().to(avg.dtype))
        if averages:  # avg + (1 - d) (x - avg), as fused multi-tensor kernels (torch's public EMA update)
            get_ema_multi_avg_fn(d)(averages, values, None)

    def update_attr(
        self, model: nn.Module, include: Iterable[str] = (), exclude: Iterable[str] = ("process_group", "reducer")
    ) -> None:
        """Copy plain attributes (``names``, ``stride``, ``yaml``, ``nc`` ...) from ``model`` to the average.

        Args:
            model: source model.
            include: copy only these names; empty copies every public plain attribute.
            exclude: names never copied. Private names, submodules, parameters and buffers are never copied, and
                neither is ``training`` (the average stays in eval mode).
        """
        include, exclude = set(include), set(exclude) | {"training"}
        for name, value in vars(model).items():
            if name.startswith("_") or name in exclude or (include and name not in include):
                continue
            setattr(self.module, name, value)

    def train(self, mode: bool = True) -> ModelEMA:
        """Keep the average in eval mode whatever mode the parent module is switched to."""
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the averaged model."""
        return self.module(*args, **kwargs)
