"""Blocks: shapes, weight-contract attribute names, residual rules, SPPF == SPP, Focus order, BN folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_yolo.models.blocks import (
    C3,
    SPP,
    SPPF,
    Bottleneck,
    Concat,
    Conv,
    Focus,
    fuse_conv_and_bn,
    same_padding,
)


def _randomise_bn(module: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.2, 3)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)


@pytest.mark.parametrize(("k", "d", "expected"), [(1, 1, 0), (3, 1, 1), (5, 1, 2), (3, 2, 2), ((1, 3), 1, [0, 1])])
def test_same_padding(k: int | tuple[int, int], d: int, expected: int | list[int]) -> None:
    assert same_padding(k, None, d) == expected
    assert same_padding(k, 7, d) == 7


def test_conv_keys_shape_and_settings() -> None:
    conv = Conv(3, 16, 6, 2, 2)  # the v6+ stem: 6x6 stride 2, padding 2
    assert list(conv.state_dict()) == [
        "conv.weight",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert conv.conv.bias is None
    assert conv.bn.eps == 1e-3 and conv.bn.momentum == 0.03
    assert isinstance(conv.act, nn.SiLU)
    assert conv(torch.rand(2, 3, 64, 48)).shape == (2, 16, 32, 24)


def test_conv_activation_choices() -> None:
    assert isinstance(Conv(3, 4, act=False).act, nn.Identity)
    relu = nn.ReLU()
    assert Conv(3, 4, act=relu).act is relu


@pytest.mark.parametrize("groups", [1, 2])
def test_fuse_conv_and_bn_equals_conv_then_bn_in_eval(groups: int) -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, 2, 1, groups=groups, bias=groups == 2), nn.BatchNorm2d(6, eps=1e-3)
    _randomise_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 9, 9)
    fused = fuse_conv_and_bn(conv, bn)
    assert fused.bias is not None and not fused.weight.requires_grad
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_conv_fuse_bn_keeps_eval_output_and_drops_batchnorm() -> None:
    torch.manual_seed(0)
    block = C3(8, 8, n=2)
    _randomise_bn(block)
    block.eval()
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        expected = block(x)
        for m in block.modules():
            if isinstance(m, Conv):
                m.fuse_bn()
                m.fuse_bn()  # a second call is a no-op
        assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_bottleneck_adds_the_input_only_with_shortcut_and_equal_channels() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    residual = Bottleneck(8, 8).eval()
    assert residual.add
    torch.testing.assert_close(residual(x), x + residual.cv2(residual.cv1(x)))
    assert not Bottleneck(8, 8, shortcut=False).add
    assert not Bottleneck(8, 16).add
    assert Bottleneck(8, 16)(x).shape == (2, 16, 6, 6)
    assert list(dict(residual.named_children())) == ["cv1", "cv2"]
    assert residual.cv1.conv.out_channels == 4 and residual.cv2.conv.kernel_size == (3, 3)


def test_c3_structure_and_forward() -> None:
    block = C3(16, 32, n=3, shortcut=False)
    assert list(dict(block.named_children())) == ["cv1", "cv2", "cv3", "m"]
    assert len(block.m) == 3 and not any(b.add for b in block.m)
    assert block.cv1.conv.out_channels == block.cv2.conv.out_channels == 16
    assert block.cv3.conv.in_channels == 32
    assert block(torch.rand(2, 16, 8, 8)).shape == (2, 32, 8, 8)
    assert all(b.add for b in C3(16, 16, n=2).m)


def test_sppf_equals_spp_with_kernels_5_9_13() -> None:
    torch.manual_seed(0)
    spp, sppf = SPP(16, 24, (5, 9, 13)).eval(), SPPF(16, 24, 5).eval()
    sppf.load_state_dict(spp.state_dict())  # same cv1/cv2 shapes; the pools hold no weights
    x = torch.randn(2, 16, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(sppf(x), spp(x))
    assert list(dict(sppf.named_children())) == ["cv1", "cv2", "m"]


def test_focus_packs_each_2x2_block_into_channels_in_yolov5_order() -> None:
    focus = Focus(1, 4)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    packed = {}
    focus.conv.register_forward_pre_hook(lambda _, args: packed.setdefault("x", args[0]))  # space-to-depth result
    focus(x)
    # channel order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col)
    assert packed["x"][0, :, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
    assert packed["x"].shape == (1, 4, 2, 2)


def test_focus_output_shape() -> None:
    assert Focus(3, 8, 3)(torch.rand(1, 3, 16, 16)).shape == (1, 8, 8, 8)


def test_concat_joins_channels() -> None:
    a, b = torch.rand(1, 2, 3, 3), torch.rand(1, 5, 3, 3)
    torch.testing.assert_close(Concat(1)([a, b]), torch.cat((a, b), 1))
