"""DetectionModel: a YOLOv5 architecture YAML turned into one `nn.Sequential` indexed by YAML row."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_yolo.errors import ConfigError
from lightning_yolo.models.blocks import C3, SPP, SPPF, Bottleneck, Concat, Conv, Focus
from lightning_yolo.models.head import Detect
from lightning_yolo.models.summary import layer_table, model_summary
from lightning_yolo.settings import load_yaml

CONFIG_PACKAGE = "lightning_yolo.models"
CONFIG_DIR = "configs"
CHANNEL_DIVISOR = 8
"""Scaled channel counts are rounded up to a multiple of this."""
PROBE_SIZE = 256
"""Side of the zero image whose forward pass measures the level strides (2x the smallest stride of interest)."""

MODULES: dict[str, type[nn.Module]] = {
    "Conv": Conv,
    "Bottleneck": Bottleneck,
    "C3": C3,
    "SPP": SPP,
    "SPPF": SPPF,
    "Focus": Focus,
    "Concat": Concat,
    "nn.Upsample": nn.Upsample,
    "Detect": Detect,
}
"""Module names a YAML row may use. Names are looked up here, never evaluated."""

_SCALED_BLOCKS = (Conv, Bottleneck, C3, SPP, SPPF, Focus)  # signature (c1, c2, ...): width-scaled output
_REPEAT_INSIDE = (C3,)  # the row's repeat count becomes the block's `n` argument
_REQUIRED_KEYS = ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head")
MAX_CHANNELS = 8192
"""Most channels a layer may have after width scaling (yolov5x6 peaks at 1280): refused before any allocation."""
MAX_REPEATS = 64
"""Most repeats a row may have after depth scaling (yolov5x6 peaks at 12)."""
MAX_CLASSES = 100_000
"""Most classes a head may predict."""


@dataclass(frozen=True)
class LayerSpec:
    """One built YAML row: where its input comes from and what was built."""

    index: int
    source: int | list[int]
    """-1 = previous layer, else the row index (or a list of them, -1 allowed) feeding this layer."""
    repeats: int
    """The row's repeat count after depth scaling."""
    module: str
    args: list[Any]
    """Constructor arguments as finally passed (channels resolved)."""
    params: int


def available_configs() -> list[str]:
    """Names of the architecture YAMLs shipped with lightning_yolo, e.g. `yolov5s.yaml`."""
    folder = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_DIR)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(cfg: str | Path | dict) -> tuple[dict, str]:
    """Resolve an architecture to a fresh dict.

    Args:
        cfg: a dict (deep-copied); a path to a YAML file; or the name of a shipped architecture,
            with or without `.yaml` (`"yolov5s"`, `"yolov5s.yaml"`).

    Returns:
        (architecture dict, a short name for messages: the file name or "dict").

    Raises:
        FileNotFoundError: neither an existing file nor a shipped name.
        ConfigError: the YAML is not safe plain data, not a mapping, lacks a required key or has a bad header value.
    """
    if isinstance(cfg, dict):
        d, source = copy.deepcopy(cfg), "dict"
    else:
        path = _find_config(cfg)
        d = load_yaml(path)
        source = str(path)
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: a model YAML must be a mapping, got {type(d).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in d]
    if missing:
        raise ConfigError(f"{source}: model YAML lacks required key(s) {missing}")
    _check_header(d, source)
    return d, source


def _check_header(d: dict, source: str) -> None:
    """Types of the scalar keys and of the row lists, checked before anything is built."""
    if not (isinstance(d["nc"], int) and 1 <= d["nc"] <= MAX_CLASSES):
        raise ConfigError(f"{source}: 'nc' must be an int in [1, {MAX_CLASSES}], got {d['nc']!r}")
    for key in ("depth_multiple", "width_multiple"):
        if not (isinstance(d[key], (int, float)) and 0 < d[key] <= 16):
            raise ConfigError(f"{source}: {key!r} must be a number in (0, 16], got {d[key]!r}")
    anchors = d["anchors"]
    if not (isinstance(anchors, int) and anchors >= 1) and not _is_anchor_list(anchors):
        raise ConfigError(f"{source}: 'anchors' must be a count per level or per-level lists [w1, h1, w2, h2, ...]")
    for key in ("backbone", "head"):
        if not isinstance(d[key], list):
            raise ConfigError(f"{source}: {key!r} must be a list of [from, number, module, args] rows")


def _is_anchor_list(anchors: Any) -> bool:
    """Per-level lists of equal, even, non-zero length holding numbers."""
    if not (isinstance(anchors, list) and anchors and all(isinstance(a, list) for a in anchors)):
        return False
    n = len(anchors[0])
    return n > 0 and n % 2 == 0 and all(len(a) == n and all(isinstance(v, (int, float)) for v in a) for a in anchors)


def _find_config(cfg: str | Path) -> Path:
    """An existing file path, else a shipped config by name."""
    path = Path(cfg)
    if path.is_file():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    shipped = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_DIR, name)
    if str(path.parent) == "." and shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"model config {str(cfg)!r} is neither a file nor one of {available_configs()}")


def make_divisible(x: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Smallest multiple of `divisor` that is >= x."""
    return math.ceil(x / divisor) * divisor


def _resolve_args(args: list[Any], symbols: dict[str, Any]) -> list[Any]:
    """Replace the symbolic strings YOLOv5 YAMLs use ("nc", "anchors", "None", ...) by their values."""
    return [symbols[a] if isinstance(a, str) and a in symbols else a for a in args]


def _check_row(row: Any, index: int, source: str) -> tuple[int | list[int], int, str, list]:
    """Validate one `[from, number, module, args]` row; returns it with `args` copied."""
    where = f"{source}: row {index} {str(row)[:200]}"
    if not (isinstance(row, (list, tuple)) and len(row) == 4):
        raise ConfigError(f"{where}: expected [from, number, module, args]")
    f, n, name, args = row
    if not isinstance(name, str) or name not in MODULES:
        raise ConfigError(f"{where}: unknown module {name!r}; known modules are {sorted(MODULES)}")
    froms = [f] if isinstance(f, int) else f
    valid = (lambda j: j == -1) if index == 0 else (lambda j: -index <= j < index)
    if not (isinstance(froms, list) and froms and all(isinstance(j, int) and valid(j) for j in froms)):
        raise ConfigError(f"{where}: 'from' must be -1 or earlier row indices")
    if not (isinstance(n, int) and n >= 1) or not isinstance(args, list):
        raise ConfigError(f"{where}: 'number' must be a positive int and 'args' a list")
    return f, n, name, list(args)


def build_layers(d: dict, ch: int, source: str = "dict") -> tuple[nn.Sequential, list[int], list[LayerSpec]]:
    """Build the layers of an architecture dict.

    Depth: a row's repeat count n becomes `max(round(n * depth_multiple), 1)` when n > 1. Width: output
    channels `args[0]` of conv-like blocks become `ceil(c * width_multiple / 8) * 8`, except a conv that
    produces exactly the head's `na * (5 + nc)` outputs.

    Args:
        d: architecture dict (see `load_config`); not modified.
        ch: input image channels.
        source: name of the YAML, for error messages.

    Returns:
        (layers indexed by row, sorted row indices whose outputs later rows read, one LayerSpec per row).
    """
    layers, specs, save = [], [], set()
    for i, (row, f, repeats, name, args, n_copies) in enumerate(plan_layers(d, ch, source)):
        block = MODULES[name]
        try:
            layer = nn.Sequential(*(block(*args) for _ in range(n_copies))) if n_copies > 1 else block(*args)
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ConfigError(f"{source}: row {i} {str(row)[:200]}: cannot build {name}: {e}") from None
        params = sum(p.numel() for p in layer.parameters())
        specs.append(LayerSpec(i, f, repeats, name, args, params))
        save.update(j % i for j in ([f] if isinstance(f, int) else f) if j != -1)
        layers.append(layer)
    return nn.Sequential(*layers), sorted(save), specs


def plan_layers(d: dict, ch: int, source: str = "dict") -> list[tuple[Any, Any, int, str, list, int]]:
    """Check every row and resolve its constructor arguments without allocating anything.

    Returns:
        Per row: the row as written, its ``from``, its repeats after depth scaling, the module name, the final
        constructor arguments and the number of copies to build.

    Raises:
        ConfigError: a row is malformed, names an unknown module, or scales beyond MAX_REPEATS / MAX_CHANNELS.
    """
    nc, gd, gw, anchors = d["nc"], d["depth_multiple"], d["width_multiple"], d["anchors"]
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else anchors
    n_out = na * (nc + 5)
    symbols = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    rows = list(d["backbone"]) + list(d["head"])
    planned, chans = [], [ch]
    for i, row in enumerate(rows):
        f, n, name, args = _check_row(row, i, source)
        block = MODULES[name]
        repeats = max(round(n * gd), 1) if n > 1 else n
        c_in = chans[f] if isinstance(f, int) else None
        where = f"{source}: row {i} {str(row)[:200]}"
        if repeats > MAX_REPEATS:
            raise ConfigError(f"{where}: {repeats} repeats after depth scaling (at most {MAX_REPEATS})")
        try:
            args, c_out, n_copies = _block_args(block, _resolve_args(args, symbols), f, repeats, chans, gw, n_out)
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ConfigError(f"{where}: cannot build {name}: {e}") from None
        _check_channels(args, c_out, where)
        planned.append((row, f, repeats, name, args, n_copies))
        chans = chans if i else []  # after row 0, chans[j] is the output channel count of row j
        chans.append(c_out if c_out is not None else c_in)
    return planned


def _check_channels(args: list, c_out: int | None, where: str) -> None:
    """Refuse a row whose channel counts are not positive or exceed MAX_CHANNELS, before it is allocated."""
    counts = [c_out] if c_out is not None else []
    counts += [a for a in args[:2] if isinstance(a, int) and not isinstance(a, bool)]
    bad = [c for c in counts if not 0 < c <= MAX_CHANNELS]
    if bad:
        raise ConfigError(f"{where}: {bad[0]} channels (at most {MAX_CHANNELS}; check width_multiple and args)")


def _block_args(
    block: type[nn.Module], args: list, f: int | list[int], n: int, chans: list[int], gw: float, n_out: int
) -> tuple[list, int | None, int]:
    """Constructor args, output channels (None = same as input) and remaining repeats for one row."""
    if block in _SCALED_BLOCKS:
        c1, c2 = chans[f], args[0]
        if c2 != n_out:
            c2 = make_divisible(c2 * gw)
        args = [c1, c2, *args[1:]]
        if block in _REPEAT_INSIDE:
            args.insert(2, n)
            n = 1
        return args, c2, n
    if block is Concat:
        return args, sum(chans[j] for j in f), n
    if block is Detect:
        froms = [f] if isinstance(f, int) else f
        if isinstance(args[1], int):  # anchors given as a count per level: placeholders until AutoAnchor
            args[1] = [list(range(args[1] * 2))] * len(froms)
        return [*args, [chans[j] for j in froms]], None, n
    return args, None, n


class DetectionModel(nn.Module):
    """YOLOv5 detector built from an architecture YAML.

    Return contract of `forward(x)` for an input `x` (bs, ch, H, W) with H, W multiples of the largest stride:
      - train mode: list of nl raw tensors (bs, na, ny, nx, 5 + nc) of logits, level i having
        ny = H / stride[i], nx = W / stride[i]; the columns are tx, ty, tw, th, objectness, classes.
      - eval mode: one decoded tensor (bs, sum(na * ny * nx), 5 + nc), rows ordered by level, then anchor,
        then y, then x; columns centre x, centre y, width, height in input pixels, then sigmoid objectness
        and nc sigmoid class probabilities.
    `forward_raw(x)` returns the raw list in either mode, and `self.model[-1].decode(raw)` turns it into the
    eval output.

    Attributes:
        model: nn.Sequential indexed by YAML row; `model[-1]` is the `Detect` head. Its state_dict keys are
            those of official YOLOv5 checkpoints (`model.0.conv.weight` ... plus `model.<last>.anchors`).
        save: sorted row indices whose outputs are read by later rows.
        yaml: the resolved architecture dict (nc and anchors overrides applied, `ch` filled in).
        names: class names; from the YAML's `names` when it has nc of them, else "0", "1", ...
        layers: one `LayerSpec` per row (routing and what was built).
    """

    def __init__(
        self,
        cfg: str | Path | dict = "yolov5s.yaml",
        ch: int = 3,
        nc: int | None = None,
        anchors: int | list | None = None,
    ) -> None:
        """Args:
        cfg: shipped architecture name ("yolov5s" or "yolov5s.yaml"), a path to a YAML in the same format,
            or an architecture dict.
        ch: input channels; a `ch` key in the YAML takes precedence (as in YOLOv5).
        nc: number of classes, overriding the YAML's `nc`.
        anchors: overrides the YAML's anchors: an int (anchors per level, sizes to be set by AutoAnchor) or
            a list of per-level `[w1, h1, w2, h2, ...]` pixel sizes.
        """
        super().__init__()
        self.yaml, source = load_config(cfg)
        self.yaml_file = Path(source).name if source != "dict" else None
        ch = self.yaml.setdefault("ch", ch)
        if nc:
            self.yaml["nc"] = int(nc)
        if anchors:
            self.yaml["anchors"] = anchors if isinstance(anchors, list) else round(anchors)
        _check_header(self.yaml, f"{source} (with overrides)" if nc or anchors else source)
        self.model, self.save, self.layers = build_layers(self.yaml, ch, source)
        if not isinstance(self.model[-1], Detect):
            raise ConfigError(f"{source}: the last row must be a Detect head")
        self.names = _class_names(self.yaml)
        self._init_head(ch)

    @property
    def stride(self) -> torch.Tensor:
        """Level strides in pixels, (nl,): [8, 16, 32] for P5 models, [8, 16, 32, 64] for P6 models."""
        return self.model[-1].stride

    @property
    def nc(self) -> int:
        """Number of classes."""
        return self.model[-1].nc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        """Raw level outputs in train mode, decoded predictions in eval mode (see the class docstring)."""
        raw = self.forward_raw(x)
        return raw if self.training else self.model[-1].decode(raw)

    def forward_raw(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw level outputs (bs, na, ny, nx, 5 + nc) whatever the mode."""
        outputs: list[torch.Tensor | None] = []
        save = set(self.save)
        for layer, spec in zip(self.model, self.layers, strict=True):
            if spec.source != -1:
                f = spec.source
                x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            x = layer(x)
            outputs.append(x if spec.index in save else None)
        return x

    def fuse(self) -> DetectionModel:
        """Fold every BatchNorm into its convolution for inference; eval outputs are unchanged. Returns self."""
        for m in self.model.modules():
            if isinstance(m, Conv):
                m.fuse_bn()
        return self

    def summary(self, imgsz: int = 640, verbose: bool = False) -> str:
        """One line: layers, parameters, gradients, GFLOPs at `imgsz`; with `verbose`, a per-row table first."""
        line = model_summary(self, imgsz)
        return f"{layer_table(self)}\n{line}" if verbose else line

    def _init_head(self, ch: int) -> None:
        """Measure strides, express anchors in grid units (checking their order), set the prior biases."""
        head = self.model[-1]
        head.stride.copy_(self._probe_strides(ch))
        with torch.no_grad():
            _check_anchor_order(head)
            head.anchors /= head.stride.view(-1, 1, 1)
        head.initialize_biases()

    @torch.no_grad()
    def _probe_strides(self, ch: int) -> torch.Tensor:
        """Strides from the level sizes of a forward pass on a PROBE_SIZE x PROBE_SIZE zero image.

        YOLOv5 runs this probe in train mode on a freshly built model, before it sets BatchNorm momentum to
        0.03, so every BatchNorm takes one running-stat update at PyTorch's default momentum 0.1 (from all-zero
        activations: running_var becomes 0.9, num_batches_tracked 1). We reproduce that exactly, so a fresh
        model here starts from the same state as a fresh YOLOv5 model; training overwrites it within a few
        hundred steps either way.
        """
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in bns]
        was_training = self.training
        try:
            for bn in bns:
                bn.momentum = 0.1
            self.train()
            p = next(self.parameters())
            raw = self.forward_raw(torch.zeros(1, ch, PROBE_SIZE, PROBE_SIZE, device=p.device, dtype=p.dtype))
        finally:
            for bn, m in zip(bns, momenta, strict=True):
                bn.momentum = m
            self.train(was_training)
        return torch.tensor([PROBE_SIZE / r.shape[-2] for r in raw])


def _check_anchor_order(head: Detect) -> None:
    """Reverse the anchor levels if their mean area runs against the stride order (anchors still in pixels)."""
    area = head.anchors.prod(-1).mean(-1)  # (nl,) mean anchor area per level
    d_area = area[-1] - area[0]
    d_stride = head.stride[-1] - head.stride[0]
    if d_area != 0 and d_area.sign() != d_stride.sign():
        head.anchors.copy_(head.anchors.flip(0))


def _class_names(d: dict) -> list[str]:
    """The YAML's `names` (list, or dict keyed 0..nc-1) when it holds exactly nc names, else "0".."nc-1"."""
    names, nc = d.get("names"), d["nc"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)] if sorted(names) == list(range(len(names))) else None
    if isinstance(names, list) and len(names) == nc:
        return [str(n) for n in names]
    return [str(i) for i in range(nc)]
