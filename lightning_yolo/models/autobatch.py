"""AutoBatch (``--data.batch_size -1``): the training batch size that fills a fraction of a CUDA device's memory.

YOLOv5's method: measure the peak memory of a forward and backward pass at batch sizes 1, 2, 4, 8 and 16, fit a
straight line through (batch size, GiB), and solve it for the free memory times ``fraction``. On a CPU there is
nothing to measure and the default batch size is kept. Torch only.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger("lightning_yolo")

DEFAULT_BATCH_SIZE = 16
"""What AutoBatch falls back to (YOLOv5's default ``--batch-size``)."""
MEMORY_FRACTION = 0.6
"""Share of the device's free memory the chosen batch is predicted to use."""
PROFILED_SIZES = (1, 2, 4, 8, 16)
GIB = 1 << 30


def autobatch(
    model: nn.Module,
    imgsz: int,
    device: torch.device,
    fraction: float = MEMORY_FRACTION,
    default: int = DEFAULT_BATCH_SIZE,
    measure: Callable[[nn.Module, int, int, torch.device], float] | None = None,
) -> int:
    """The batch size predicted to use ``fraction`` of ``device``'s free memory when training ``model`` at ``imgsz``.

    Args:
        model: the detector (copied; the original is untouched).
        imgsz: training image side.
        device: where training runs; anything but CUDA keeps ``default``.
        fraction: target share of the free memory.
        default: the batch size kept when nothing can be measured or the fit makes no sense.
        measure: ``(model, batch, imgsz, device) -> peak GiB`` of one training pass; default
            :func:`peak_training_memory`. Raises ``torch.cuda.OutOfMemoryError`` when the batch does not fit.

    Returns:
        A batch size in [1, 1024].
    """
    if device.type != "cuda":
        log.info("AutoBatch: no CUDA device to measure (training on %s), keeping batch size %d", device.type, default)
        return default
    measure = measure or peak_training_memory
    free = free_memory_gib(device)
    model = copy.deepcopy(model).to(device).train()
    peaks: list[float | None] = []
    for batch in PROFILED_SIZES:
        try:
            peaks.append(measure(model, batch, imgsz, device))
        except torch.cuda.OutOfMemoryError:
            peaks.append(None)
            break
    del model
    chosen = solve_batch_size(PROFILED_SIZES, peaks, free * fraction, default)
    log.info("AutoBatch: batch size %d for %.0f%% of %.2f GiB free on %s", chosen, fraction * 100, free, device)
    return chosen


def solve_batch_size(sizes: Sequence[int], peaks: Sequence[float | None], budget: float, default: int) -> int:
    """Fit ``peak = a * batch + b`` through the measured points and solve ``a * batch + b = budget``.

    A size that ran out of memory caps the answer at the last size that fitted (YOLOv5's rule); an answer outside
    [1, 1024] (a measurement anomaly) gives ``default``.
    """
    measured = [(s, p) for s, p in zip(sizes, peaks, strict=False) if p is not None]
    if len(measured) < 2:
        return default if not measured else measured[0][0]
    slope, intercept = np.polyfit([s for s, _ in measured], [p for _, p in measured], deg=1)
    if slope <= 0:
        return default
    batch = int((budget - intercept) / slope)
    if None in peaks:
        failed = sizes[list(peaks).index(None)]
        if batch >= failed:
            batch = measured[-1][0]
    return batch if 1 <= batch <= 1024 else default


def free_memory_gib(device: torch.device) -> float:
    """Total minus reserved and allocated memory of a CUDA device, in GiB (YOLOv5's figure)."""
    total = torch.cuda.get_device_properties(device).total_memory
    return (total - torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)) / GIB


def peak_training_memory(model: nn.Module, batch: int, imgsz: int, device: torch.device) -> float:
    """Peak GiB of one forward and backward pass of ``model`` on a zero batch (CUDA only)."""
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.zeros(batch, 3, imgsz, imgsz, device=device)
    outputs = model(x)
    loss = sum(o.float().sum() for o in (outputs if isinstance(outputs, list | tuple) else [outputs]))
    loss.backward()
    model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated(device) / GIB
    torch.cuda.empty_cache()
    return peak
