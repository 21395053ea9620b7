"""Model size report: layers, parameters, gradients, GFLOPs, and a per-row layer table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_yolo.models.blocks import Conv

if TYPE_CHECKING:
    from lightning_yolo.models.yolo import DetectionModel


def count_layers(model: nn.Module) -> int:
    """Number of modules, counted the way YOLOv5 v7.0 reports it.

    YOLOv5 shares one activation instance between all its Conv blocks and drops the BatchNorm when fusing;
    here each Conv owns its activation and a fused BatchNorm becomes an `nn.Identity`. Counting each Conv
    activation type once and skipping identities gives YOLOv5's figures (yolov5s: 214 layers, 157 fused).
    """
    conv_acts = {id(m.act): type(m.act) for m in model.modules() if isinstance(m, Conv)}
    n = sum(1 for m in model.modules() if id(m) not in conv_acts and not isinstance(m, nn.Identity))
    return n + len({t for t in conv_acts.values() if t is not nn.Identity})


@torch.no_grad()
def count_gflops(model: DetectionModel, imgsz: int | tuple[int, int] = 640) -> float:
    """GFLOPs of one forward pass on a 3-channel `imgsz` image (int = square, or (h, w)).

    Convention: a multiply-add counts as 2 FLOPs, as `FlopCounterMode` counts and as YOLOv5 reports
    (`thop` MACs x 2), so yolov5n gives about 4.5 at 640. Only convolutions (and matmuls) are counted;
    YOLOv5's `thop` also adds BatchNorm, which is why it prints 4.6 for an unfused yolov5n. The pass runs
    at the largest stride (at least 32) and is scaled by area, which is exact for these fully
    convolutional models; it runs in eval mode so BatchNorm statistics are left untouched.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    side = max(int(model.stride.max()), 32)
    p = next(model.parameters())
    x = torch.zeros(1, model.yaml["ch"], side, side, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.train(False)
    try:
        with FlopCounterMode(display=False) as counter:
            model.forward_raw(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9 * (h / side) * (w / side)


def model_summary(model: DetectionModel, imgsz: int = 640) -> str:
    """`"YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.5 GFLOPs"` (GFLOPs at imgsz)."""
    n_p = sum(p.numel() for p in model.parameters())
    n_g = sum(p.numel() for p in model.parameters() if p.requires_grad)
    name = Path(model.yaml_file).stem.replace("yolov5", "YOLOv5") if model.yaml_file else "Model"
    gflops = count_gflops(model, imgsz)
    return f"{name} summary: {count_layers(model)} layers, {n_p} parameters, {n_g} gradients, {gflops:.1f} GFLOPs"


def layer_table(model: DetectionModel) -> str:
    """One line per YAML row: index, from, repeats (after depth scaling), parameters, module, constructor args."""
    lines = [f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<24}arguments"]
    for spec in model.layers:
        row = f"{spec.index:>3}{spec.source!s:>18}{spec.repeats:>3}{spec.params:10d}  {spec.module:<24}"
        lines.append(row + str(spec.args))
    return "\n".join(lines)
