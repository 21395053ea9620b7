"""YOLOv5 detection head: one 1x1 conv per pyramid level and the anchor-based box decode."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_GRID_CACHE_SIZE = 32  # distinct (level, ny, nx, device, dtype) grids kept; multi-scale training needs a few


class Detect(nn.Module):
    """Per-level 1x1 convs predicting `na * (5 + nc)` channels, and the decode of those raw outputs.

    Attributes:
        nc: number of classes. no: outputs per anchor, `5 + nc`. nl: number of levels. na: anchors per level.
        anchors: buffer (nl, na, 2) of anchor width/height. Given in input pixels; `DetectionModel` divides
            it by the level stride right after construction, so in a built model it is in grid units
            (the unit the loss works in). It is part of the state_dict (`model.<i>.anchors`).
        stride: non-persistent buffer (nl,) of level strides in pixels, set by `DetectionModel`'s stride probe.
        m: ModuleList of the nl output convs.
    """

    def __init__(
        self,
        nc: int = 80,
        anchors: Sequence[Sequence[float]] = (),
        ch: Sequence[int] = (),
        inplace: bool = True,
    ) -> None:
        """Args:
        nc: number of classes.
        anchors: one flat list `[w1, h1, w2, h2, ...]` of anchor sizes in pixels per level.
        ch: input channels per level.
        inplace: accepted for YAML compatibility; the decode never works in place.
        """
        super().__init__()
        if len(anchors) != len(ch):
            raise ValueError(f"Detect got {len(anchors)} anchor levels but {len(ch)} input levels")
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        # Cell-offset grids keyed by (level, ny, nx, device, dtype): a plain dict, so never in the state_dict.
        self._grids: dict[tuple, torch.Tensor] = {}

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Raw per-level predictions, the same in train and eval mode.

        Args:
            x: nl feature maps, level i of shape (bs, ch[i], ny_i, nx_i).

        Returns:
            nl tensors (bs, na, ny_i, nx_i, 5 + nc) of logits: tx, ty, tw, th, objectness, classes.
        """
        out = []
        for i, conv in enumerate(self.m):
            p = conv(x[i])
            bs, _, ny, nx = p.shape
            out.append(p.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())  # (bs, na, ny, nx, no)
        return out

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Turn raw level outputs into boxes in input pixels.

        `xy = (sigmoid * 2 - 0.5 + cell) * stride`, `wh = (sigmoid * 2) ** 2 * anchor_pixels`; objectness and
        class scores get a sigmoid.

        Args:
            raw: the output of `forward`, nl tensors (bs, na, ny, nx, 5 + nc).

        Returns:
            (bs, sum(na * ny * nx), 5 + nc): centre x, centre y, width, height (input pixels), objectness,
            nc class probabilities; rows ordered by level, then anchor, then y, then x.
        """
        out = []
        for i, p in enumerate(raw):
            bs, na, ny, nx, no = p.shape
            y = p.sigmoid()
            offset = self._cell_offsets(i, ny, nx, p.device, p.dtype)  # (1, 1, ny, nx, 2)
            stride = self.stride[i].to(p.dtype)
            anchor_px = (self.anchors[i] * self.stride[i]).view(1, na, 1, 1, 2).to(p.dtype)
            xy = (y[..., :2] * 2 + offset) * stride
            wh = (y[..., 2:4] * 2) ** 2 * anchor_px
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, na * ny * nx, no))
        return torch.cat(out, 1)

    def _cell_offsets(self, level: int, ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Grid of (x - 0.5, y - 0.5) per cell, shape (1, 1, ny, nx, 2).

        The -0.5 of the decode is folded into the cached grid, which keeps the arithmetic identical to
        YOLOv5's and so its outputs bit-comparable. Anchors are not cached: AutoAnchor may change them.
        """
        key = (level, ny, nx, device, dtype)
        grid = self._grids.get(key)
        if grid is None:
            if len(self._grids) >= _GRID_CACHE_SIZE:
                self._grids.clear()
            ys = torch.arange(ny, device=device, dtype=dtype)
            xs = torch.arange(nx, device=device, dtype=dtype)
            yv, xv = torch.meshgrid(ys, xs, indexing="ij")
            grid = (torch.stack((xv, yv), 2) - 0.5).view(1, 1, ny, nx, 2)
            self._grids[key] = grid
        return grid

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """Prior output biases (needs `stride`): about 8 objects per 640x640 image, and class probability
        0.6 spread over nc classes (focal-loss paper, section 3.3)."""
        for conv, s in zip(self.m, self.stride.tolist(), strict=True):
            b = conv.bias.view(self.na, self.no)  # (na, 5 + nc), a view into the parameter
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
