"""Settings: YAML files read safely, and range checks for values that parse fine but make no sense (``lr0: -1``).

Every YAML the package reads (dataset, model, ``--config`` files, hyp fragments) goes through :func:`load_yaml`:
PyYAML's safe loader (no ``!!python`` tags), refused with one line when the file is too large, nests too deeply or
expands (through aliases) into too many nodes, before anything is built from it.

Range checks use one mechanism for every section: a rule table maps a setting to a predicate and a phrase saying
what a valid value is, and :func:`check_settings` raises :class:`~lightning_yolo.errors.ConfigError` naming the
key as written on the command line (``model.lr0``), before any model is built or any image is read. The model and
the data module call it from their ``__init__``, so the checks hold from Python and from the command line alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lightning_yolo.errors import ConfigError

log = logging.getLogger("lightning_yolo")

Rule = tuple[Callable[[Any], bool], str]
"""A predicate on the value, and what a valid value is (for the message)."""

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSProp")
"""Optimisers YOLOv5 offers (case-insensitive)."""


def _positive(v: Any) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: Any) -> bool:
    return v >= 0 and math.isfinite(v)


def _fraction(v: Any) -> bool:
    return 0 <= v <= 1


def _below_one(v: Any) -> bool:
    return 0 <= v < 1


def _at_least_one(v: Any) -> bool:
    return v >= 1


POSITIVE: Rule = (_positive, "> 0")
NON_NEGATIVE: Rule = (_non_negative, ">= 0")
PROBABILITY: Rule = (_fraction, "a probability in [0, 1]")
AT_LEAST_ONE: Rule = (_at_least_one, ">= 1")
MAX_IMAGE_SIZE = 8192
"""Largest training / inference image side: a mosaic canvas is 2x that squared (0.8 GB of pixels at 8192)."""
IMAGE_SIZE: Rule = (lambda v: 1 <= v <= MAX_IMAGE_SIZE, f"in [1, {MAX_IMAGE_SIZE}]")

BATCH_SIZE: Rule = (lambda v: v == -1 or v >= 1, ">= 1 (or -1: AutoBatch)")

MODEL_RULES: dict[str, Rule] = {
    "imgsz": IMAGE_SIZE,
    "batch_size": BATCH_SIZE,
    "nc": (lambda v: v is None or v >= 1, ">= 1"),
    "optimizer": (lambda v: str(v).lower() in {o.lower() for o in OPTIMIZERS}, "one of " + ", ".join(OPTIMIZERS)),
    "lr0": POSITIVE,
    "lrf": POSITIVE,
    "momentum": (_below_one, "in [0, 1)"),
    "weight_decay": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "warmup_momentum": (_below_one, "in [0, 1)"),
    "warmup_bias_lr": NON_NEGATIVE,
    "nbs": AT_LEAST_ONE,
    "box": NON_NEGATIVE,
    "cls": NON_NEGATIVE,
    "obj": NON_NEGATIVE,
    "cls_pw": POSITIVE,
    "obj_pw": POSITIVE,
    "anchor_t": POSITIVE,
    "fl_gamma": NON_NEGATIVE,
    "label_smoothing": (_below_one, "in [0, 1)"),
    "max_grad_norm": POSITIVE,
    "conf_thres": (_fraction, "in [0, 1]"),
    "iou_thres": (_fraction, "in [0, 1]"),
    "max_det": AT_LEAST_ONE,
    "freeze": (lambda v: v is None or (v >= 0 if isinstance(v, int) else all(i >= 0 for i in v)), ">= 0"),
}
"""``model.<key>`` -> rule."""

DATA_RULES: dict[str, Rule] = {
    "imgsz": IMAGE_SIZE,
    "batch_size": BATCH_SIZE,
    "workers": (lambda v: v >= 0, ">= 0"),
    "cache": (lambda v: v in (None, "ram", "disk"), "null, 'ram' or 'disk'"),
    "close_mosaic": (lambda v: v >= 0, ">= 0"),
    "stride": AT_LEAST_ONE,
    "seed": (lambda v: v >= 0, ">= 0"),
    **dict.fromkeys(("flipud", "fliplr", "mosaic", "mixup", "copy_paste"), PROBABILITY),
    **dict.fromkeys(("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective"), NON_NEGATIVE),
}
"""``data.<key>`` -> rule."""

_NO_LIMIT_OR_AT_LEAST_ONE: Rule = (lambda v: v is None or v == -1 or v >= 1, ">= 1 (or -1 for no limit)")
TRAINER_RULES: dict[str, Rule] = {"max_epochs": _NO_LIMIT_OR_AT_LEAST_ONE, "max_steps": _NO_LIMIT_OR_AT_LEAST_ONE}
"""``trainer.<key>`` -> rule: the Trainer would otherwise silently train nothing (``max_epochs: 0``)."""


def check_settings(section: str, values: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise ConfigError for the first value outside its rule; keys absent from ``values`` pass.

    Args:
        section: the config section the keys belong to (``model``, ``data``, ``trainer``), for the message.
        values: setting name -> value.
        rules: setting name -> rule, e.g. :data:`MODEL_RULES`.
    """
    for key, (valid, expected) in rules.items():
        if key not in values:
            continue
        value = values[key]
        try:
            ok = valid(value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"{section}.{key} must be {expected}, got {value!r}")


def round_to_stride(imgsz: int, stride: int) -> int:
    """``imgsz`` rounded up to a multiple of ``stride`` (at least one stride), with a warning when it changes."""
    rounded = max(math.ceil(imgsz / stride) * stride, stride)
    if rounded != imgsz:
        log.warning("imgsz=%d is not a multiple of the max stride %d: using %d", imgsz, stride, rounded)
    return rounded


MAX_YAML_BYTES = 16 << 20
"""Largest YAML file read (a dataset yaml with 100k class names is about 2 MB)."""
MAX_YAML_NODES = 1_000_000
"""Most nodes a YAML document may expand to, aliases counted at every use (alias bombs expand exponentially)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences (the project's own files nest at most 6 levels)."""


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with PyYAML's safe loader, refusing oversized, too deeply nested or alias-bomb documents.

    The document is composed into nodes first (aliases stay shared, so this is cheap even for a bomb), measured,
    and only then constructed into Python objects.

    Raises:
        ConfigError: the file is unreadable, not valid YAML, holds a tag that is not plain data (``!!python/...``),
            or exceeds :data:`MAX_YAML_BYTES`, :data:`MAX_YAML_DEPTH` or :data:`MAX_YAML_NODES`. The message starts
            with the path.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: YAML file too large ({size:,} bytes; at most {MAX_YAML_BYTES:,})")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the YAML file ({type(err).__name__}: {err})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """:func:`load_yaml` for YAML text; ``source`` names it in messages."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"{source}: not valid YAML ({reason[:300]})") from None
    finally:
        loader.dispose()


def _check_yaml_size(root: yaml.Node, source: str) -> None:
    """Raise ConfigError when ``root`` nests deeper than MAX_YAML_DEPTH or expands beyond MAX_YAML_NODES.

    Sizes are computed once per distinct node (memoised by identity), so an alias used a billion times costs one
    multiplication, not a billion visits. The walk is iterative: no recursion limit is involved.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        children = _yaml_children(node)
        if id(node) in sizes:
            continue
        if expanded or not children:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(f"{source}: YAML expands to more than {MAX_YAML_NODES:,} nodes (an alias bomb?)")
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
