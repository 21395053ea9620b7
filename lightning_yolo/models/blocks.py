"""Building blocks of the YOLOv5 v7.0 backbone and neck.

Attribute names (`conv`, `bn`, `act`, `cv1`..`cv3`, `m`) are part of the weight contract: official YOLOv5
state_dicts load into these blocks with `strict=True`, so they must not be renamed.
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-3
"""BatchNorm epsilon used by every YOLOv5 Conv block."""
BN_MOMENTUM = 0.03
"""BatchNorm running-stat momentum used by every YOLOv5 Conv block (PyTorch's default is 0.1)."""


def same_padding(k: int | tuple[int, ...], p: int | tuple[int, ...] | None = None, d: int = 1) -> int | list[int]:
    """Padding that keeps the spatial size at stride 1 ("same" padding) unless `p` is given.

    Args:
        k: kernel size, an int or one value per spatial dimension.
        p: explicit padding; returned unchanged when not None.
        d: dilation, which widens the effective kernel to `d * (k - 1) + 1`.
    """
    if p is not None:
        return p
    if isinstance(k, int):
        return (d * (k - 1) + 1) // 2
    return [(d * (x - 1) + 1) // 2 for x in k]


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU.

    After `fuse_bn()` the BatchNorm is folded into the convolution and `bn` becomes an identity.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        """Args:
        c1: input channels. c2: output channels. k: kernel size. s: stride.
        p: padding (None = same padding). g: groups. d: dilation.
        act: True for SiLU, False for none, or a module to use as the activation.
        """
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, same_padding(k, p, d), groups=g, dilation=d, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act is True:
            # inplace is safe here: the activation input is a fresh BatchNorm/conv output nobody else reads.
            self.act: nn.Module = nn.SiLU(inplace=True)
        elif isinstance(act, nn.Module):
            self.act = act
        else:
            self.act = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse_bn(self) -> None:
        """Fold the BatchNorm (with its running statistics) into the convolution, for inference."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.conv = fuse_conv_and_bn(self.conv, self.bn)
        self.bn = nn.Identity()


@torch.no_grad()
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d (with bias, gradients off) computing `bn(conv(x))` as BatchNorm does in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (c2,)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((conv_bias - bn.running_mean) * scale + bn.bias)
    return fused.requires_grad_(False)


class Bottleneck(nn.Module):
    """1x1 Conv -> 3x3 Conv, with a residual add when `shortcut` and the channel counts agree."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        """Args: c1/c2 input/output channels; shortcut: allow the residual; g: groups of the 3x3; e: hidden ratio."""
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with three convs: `cv3(cat(m(cv1(x)), cv2(x)))`, `m` being `n` Bottlenecks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        """Args: c1/c2 input/output channels; n: Bottleneck repeats; shortcut, g: passed to each Bottleneck;
        e: hidden-channel ratio.
        """
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPP(nn.Module):
    """Spatial pyramid pooling: parallel stride-1 max pools of several kernel sizes, concatenated."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13)) -> None:
        """Args: c1/c2 input/output channels; k: max-pool kernel sizes."""
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], 1))


class SPPF(nn.Module):
    """Fast SPP: one k x k max pool applied three times in series (k=5 equals SPP with k=(5, 9, 13))."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        """Args: c1/c2 input/output channels; k: max-pool kernel size."""
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Focus(nn.Module):
    """Space-to-depth (each 2x2 pixel block becomes 4 channels) followed by a Conv; used by pre-v6 layouts."""

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        """Args: as `Conv`, with `c1` the channels before the 4x channel expansion."""
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (b, c, h, w) -> (b, 4c, h/2, w/2); the slice order is fixed by pretrained Focus weights.
        tiles = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(tiles, 1))


class Concat(nn.Module):
    """Concatenate a list of tensors along `dimension`."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)
