"""Range checks for settings that parse fine but make no sense (``lr0: -1``, ``data.mosaic: 2``, ``max_epochs: 0``).

One mechanism for every section: a rule table maps a setting to a predicate and a phrase saying what a valid value
is, and :func:`check_settings` raises :class:`~lightning_yolo.errors.ConfigError` naming the key as written on the
command line (``model.lr0``), before any model is built or any image is read. The model and the data module call
it from their ``__init__``, so the checks hold from Python and from the command line alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

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

MODEL_RULES: dict[str, Rule] = {
    "imgsz": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
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
}
"""``model.<key>`` -> rule."""

DATA_RULES: dict[str, Rule] = {
    "imgsz": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
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
