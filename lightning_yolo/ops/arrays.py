"""Conversion between torch tensors and NumPy arrays for code that computes in NumPy (AP, anchors, plots)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: np.ndarray | torch.Tensor | Any) -> np.ndarray:
    """``x`` as a NumPy array: tensors are detached and copied to the CPU, anything else goes through ``np.asarray``."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
