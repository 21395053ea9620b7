"""The model runs channels-last by default, with the numbers of the default layout."""

from __future__ import annotations

import torch

from lightning_yolo.module import YOLOModule


def _module(channels_last: bool) -> YOLOModule:
    torch.manual_seed(0)
    return YOLOModule(cfg="yolov5n.yaml", nc=3, imgsz=64, ema=False, channels_last=channels_last)


def test_channels_last_model_matches_the_default_layout() -> None:
    nhwc, nchw = _module(True), _module(False)
    nchw.load_state_dict(nhwc.state_dict())
    conv = nhwc.model.model[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    img = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)  # a loader-style uint8 batch
    x = nhwc._preprocess(img)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert nchw._preprocess(img).is_contiguous()
    nhwc.train(), nchw.train()
    outputs = nhwc.model(x), nchw.model(nchw._preprocess(img))
    for a, b in zip(*outputs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    losses = [m.loss(out, targets)[0] for m, out in zip((nhwc, nchw), outputs, strict=True)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(conv.grad, nchw.model.model[0].conv.weight.grad, rtol=1e-3, atol=1e-4)
