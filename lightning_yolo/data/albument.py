"""Albumentations stage of the training pipeline: YOLOv5's rare pixel-level extras plus user-listed transforms.

Works on the internal format of :mod:`lightning_yolo.data.transforms` (BGR uint8 image, ``(n, 5)`` float32
``[cls, x1, y1, x2, y2]`` pixel labels). Like YOLOv5, the image is still BGR at this stage, so colour transforms
that assume RGB (``ToGray``'s channel weights, for instance) see the channels swapped.

The extras, each with probability 0.01: ``Blur(blur_limit=(3, 7))``, ``MedianBlur(blur_limit=(3, 7))``,
``ToGray``, ``CLAHE``. They only change pixels; boxes pass through untouched.

User transforms are given as mappings, e.g. ``{"name": "RandomBrightnessContrast", "p": 0.2}`` or
``{"name": "RandomCrop", "height": 320, "width": 320, "p": 0.5}``: ``name`` is looked up on the ``albumentations``
module and must be a transform class (a subclass of ``albumentations.BasicTransform``); the other keys are its
constructor arguments. Unknown names and unknown arguments raise ``ValueError``. When any user transform is spatial
(an ``albumentations.DualTransform``), boxes travel through albumentations in ``pascal_voc`` format (pixel xyxy),
clipped to the image; boxes that leave the image are dropped.

Reproducibility: albumentations keeps its own random generators. Every call draws one 32-bit seed from the caller's
``np.random.Generator`` and hands the pipeline fresh generators built from it (``Compose.set_random_state``, shared
by all transforms so that their draws are independent), so a seeded ``rng`` reproduces the output exactly.

Importing this module does not import albumentations; constructing :class:`AlbumentationsAugment` does, with
albumentations' network check for new releases switched off.
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from lightning_yolo.data.transforms import as_labels

YOLOV5_EXTRAS: tuple[dict[str, Any], ...] = (
    {"name": "Blur", "p": 0.01, "blur_limit": (3, 7)},
    {"name": "MedianBlur", "p": 0.01, "blur_limit": (3, 7)},
    {"name": "ToGray", "p": 0.01},
    {"name": "CLAHE", "p": 0.01},
)
"""YOLOv5's always-on albumentations transforms, in the internal spec format."""

_UPDATE_CHECK_ENV = "NO_ALBUMENTATIONS_UPDATE"


def import_albumentations() -> ModuleType:
    """Import albumentations without its release check (a request to PyPI at import time)."""
    previous = os.environ.get(_UPDATE_CHECK_ENV)
    os.environ[_UPDATE_CHECK_ENV] = "1"
    try:
        import albumentations
    finally:  # leave the process environment as it was
        if previous is None:
            del os.environ[_UPDATE_CHECK_ENV]
        else:
            os.environ[_UPDATE_CHECK_ENV] = previous
    return albumentations


def _transform_class(name: Any, module: ModuleType) -> type:
    """The albumentations transform class called ``name``; ValueError for anything else."""
    base = module.BasicTransform
    found = getattr(module, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if not (inspect.isclass(found) and issubclass(found, base)):
        raise ValueError(
            f"unknown albumentations transform {name!r}: expected the name of a transform class of "
            f"albumentations {module.__version__} (e.g. 'RandomBrightnessContrast')"
        )
    return found


def _check_arguments(cls: type, kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments the transform's constructor does not take (albumentations only warns)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"albumentations transform {cls.__name__!r}: unknown argument(s) {unknown}")


def build_transform(spec: Mapping[str, Any], module: ModuleType | None = None) -> Any:
    """Build one albumentations transform from ``{"name": ..., **kwargs}``.

    Args:
        spec: mapping with the transform's class name under ``"name"`` and its constructor arguments.
        module: the albumentations module (imported when omitted).

    Raises:
        ValueError: not a mapping with a ``name``, unknown name, unknown or invalid arguments.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"albumentations transform spec must be a mapping with a 'name' key, got {spec!r}")
    module = import_albumentations() if module is None else module
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    cls = _transform_class(spec["name"], module)
    _check_arguments(cls, kwargs)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"albumentations transform {cls.__name__!r}: invalid arguments: {err}") from err


class AlbumentationsAugment:
    """Apply YOLOv5's albumentations extras and optional user transforms to ``(img, labels)``.

    Args:
        transforms: user transform specs (see the module docstring), applied after the extras.
        yolov5_extras: include Blur, MedianBlur, ToGray and CLAHE at p = 0.01 each.
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any]] = (), yolov5_extras: bool = True) -> None:
        module = import_albumentations()
        specs = [*(YOLOV5_EXTRAS if yolov5_extras else ()), *transforms]
        built = [build_transform(spec, module) for spec in specs]
        self.spatial = any(isinstance(t, module.DualTransform) for t in built)
        bbox_params = None
        if self.spatial:
            bbox_params = module.BboxParams(
                format="pascal_voc", label_fields=["class_labels"], clip=True, filter_invalid_bboxes=True
            )
        self.transforms = built
        self.compose = module.Compose(built, bbox_params=bbox_params) if built else None

    def __repr__(self) -> str:
        names = ", ".join(f"{type(t).__name__}(p={t.p})" for t in self.transforms)
        return f"{type(self).__name__}([{names}])"

    def __call__(self, img: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one sample; ``rng`` seeds albumentations (one draw per call, even with nothing to apply).

        Returns:
            ``(img, labels)``: uint8 ``(H', W', 3)`` image and ``(m, 5)`` float32 labels in its pixels
            (the input labels, copied, unless a spatial user transform is present).
        """
        seed = int(rng.integers(0, 2**32))
        labels = as_labels(labels)
        if self.compose is None:
            return img, labels
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        if not self.spatial:
            return self.compose(image=img)["image"], labels
        out = self.compose(image=img, bboxes=labels[:, 1:5], class_labels=labels[:, 0])
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        classes = np.asarray(out["class_labels"], dtype=np.float32).reshape(-1, 1)
        return out["image"], np.concatenate((classes, boxes), axis=1)
