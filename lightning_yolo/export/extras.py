"""Optional exporters and runtimes: import one, or fail with the exact ``pip install`` line."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL", "MissingExtraError", "require"]

INSTALL = "pip install -e '.[export]'"
"""The install line of the ``export`` extra (onnx, onnxruntime, onnxslim, openvino, nncf, coremltools,
ai-edge-litert)."""

PACKAGES = {
    "onnx": ("onnx", INSTALL),
    "onnxruntime": ("onnxruntime", INSTALL),
    "onnxslim": ("onnxslim", INSTALL),
    "openvino": ("openvino", INSTALL),
    "nncf": ("nncf", INSTALL),
    "coremltools": ("coremltools", INSTALL),
    "ai_edge_litert.interpreter": ("ai-edge-litert", INSTALL),
    "tensorrt": ("tensorrt", "pip install tensorrt"),
}
"""Module name -> (pip package, install line)."""


class MissingExtraError(ValueError):
    """An optional package is not installed; the message holds the install line."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (e.g. ``"--format openvino"``).

    Raises:
        MissingExtraError: ``"<what> needs <package>: <install line>"`` when it is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package, line = PACKAGES.get(module, (module, f"pip install {module}"))
        raise MissingExtraError(f"{what} needs {package}: {line}") from None
