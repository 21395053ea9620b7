"""Value checks for settings that parse fine but make no sense (``lr0: -1``, ``max_epochs: 0``).

Each check raises :class:`~lightning_yolo.errors.ConfigError` naming the key as written on the command line
(``model.lr0``), before any model is built or any image is read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from lightning_yolo.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def _positive(v: Any) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: Any) -> bool:
    return v >= 0 and math.isfinite(v)


def _fraction(v: Any) -> bool:
    return 0 <= v <= 1


MODEL_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "imgsz": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "nc": (lambda v: v is None or v >= 1, ">= 1"),
    "optimizer": (lambda v: str(v).lower() in OPTIMIZERS, "one of SGD, Adam, AdamW, RMSProp"),
    "lr0": (_positive, "> 0"),
    "lrf": (_positive, "> 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (_non_negative, ">= 0"),
    "warmup_epochs": (_non_negative, ">= 0"),
    "warmup_momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "warmup_bias_lr": (_non_negative, ">= 0"),
    "nbs": (lambda v: v >= 1, ">= 1"),
    "box": (_non_negative, ">= 0"),
    "cls": (_non_negative, ">= 0"),
    "obj": (_non_negative, ">= 0"),
    "cls_pw": (_positive, "> 0"),
    "obj_pw": (_positive, "> 0"),
    "anchor_t": (_positive, "> 0"),
    "fl_gamma": (_non_negative, ">= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "max_grad_norm": (_positive, "> 0"),
    "conf_thres": (_fraction, "in [0, 1]"),
    "iou_thres": (_fraction, "in [0, 1]"),
    "max_det": (lambda v: v >= 1, ">= 1"),
}
"""Model argument -> (predicate, what a valid value is)."""


def check_model_settings(values: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first model setting outside its valid range (keys absent from ``values`` pass)."""
    for key, (valid, expected) in MODEL_RULES.items():
        if key in values and not valid(values[key]):
            raise ConfigError(f"model.{key} must be {expected}, got {values[key]!r}")


def check_trainer_settings(max_epochs: int | None, max_steps: int | None = -1) -> None:
    """Raise ConfigError when the Trainer would silently train nothing (``max_epochs: 0``, ``max_steps: 0``)."""
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise ConfigError(f"trainer.max_epochs must be >= 1 (or -1 for no limit), got {max_epochs!r}")
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise ConfigError(f"trainer.max_steps must be >= 1 (or -1 for no limit), got {max_steps!r}")


_SETTING_MESSAGE = re.compile(r"^(data|model|trainer)\.\w+ ")


def as_config_error(err: ValueError) -> ValueError:
    """The project's own setting check (a ValueError whose message starts with ``data.<key> ``) as a ConfigError.

    Any other ValueError is returned unchanged, so bugs still show their traceback.
    """
    if isinstance(err, ConfigError) or not _SETTING_MESSAGE.match(str(err)):
        return err
    return ConfigError(str(err))
