"""What every exported file carries about its model, and the one JSON form it is stored in.

Each format stores the same keys in its own place (ONNX ``metadata_props``, TorchScript ``config.txt``, OpenVINO
``metadata.yaml`` beside the IR, CoreML user-defined metadata, a TensorRT engine's header), so any loader gets a
:class:`ExportMetadata` back with :func:`metadata_from_strings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExportMetadata", "metadata_from_strings"]


@dataclass(frozen=True)
class ExportMetadata:
    """The model facts an exported file carries.

    Attributes:
        names: class names, index = class id.
        stride: the largest level stride in pixels.
        imgsz: ``[H, W]`` of the example input the file was written with.
        batch: batch size of that input.
        dynamic: the file takes any batch size and any multiple-of-stride input size.
        half: the file computes in float16.
        nms: the file ends in non-maximum suppression (final detections, not the head output).
        architecture: the model's architecture dict (YOLOv5 YAML form), so its anchors and strides can be rebuilt.
    """

    names: list[str]
    stride: int
    imgsz: list[int]
    batch: int = 1
    dynamic: bool = False
    half: bool = False
    nms: bool = False
    architecture: dict[str, Any] | None = field(default=None, compare=False)

    def to_strings(self) -> dict[str, str]:
        """Every key as a string: JSON for lists and dicts, ``"true"``/``"false"`` for flags."""
        values = {
            "names": self.names,
            "stride": self.stride,
            "imgsz": list(self.imgsz),
            "batch": self.batch,
            "dynamic": self.dynamic,
            "half": self.half,
            "nms": self.nms,
            "architecture": self.architecture,
        }
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None}


def metadata_from_strings(values: dict[str, str], source: str) -> ExportMetadata:
    """Parse the stored keys back (the reverse of :meth:`ExportMetadata.to_strings`).

    Only ``names`` and ``stride`` are required, so files written before the other keys existed still load.

    Raises:
        ValueError: ``names`` or ``stride`` is missing or malformed; the message names ``source``.
    """
    try:
        names = json.loads(values["names"])
        stride = int(values["stride"])
        imgsz = json.loads(values.get("imgsz", "[640, 640]"))
        flags = {k: json.loads(values.get(k, "false")) is True for k in ("dynamic", "half", "nms")}
        architecture = json.loads(values["architecture"]) if "architecture" in values else None
        batch = int(values.get("batch", "1"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{source}: the file's metadata lacks or garbles 'names'/'stride' ({exc})") from None
    if not isinstance(names, list) or not isinstance(imgsz, list) or len(imgsz) != 2:
        raise ValueError(f"{source}: the file's metadata 'names' or 'imgsz' is malformed")
    return ExportMetadata(
        [str(n) for n in names],
        stride,
        [int(s) for s in imgsz],
        batch,
        **flags,
        architecture=architecture if isinstance(architecture, dict) else None,
    )
