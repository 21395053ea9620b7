"""The package uses the public APIs of Lightning, torch and jsonargparse only, so an upgrade cannot break it silently.

The one exception is :mod:`lightning_yolo.data.workers` (its docstring says why: loader workers allocate batches
straight in shared memory, as torch's own ``default_collate`` does); a test pins that the private function exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_yolo"
ALLOWED = {"data/workers.py"}
"""Modules allowed a private attribute of another library, each naming why in its docstring."""


def _private_uses(path: Path) -> list[str]:
    """``file:line code`` of each private attribute read from an object that is not ``self``/``cls``/``super()``,
    and of each import of a private name or module from another package."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("lightning_yolo"):
            parts = [*node.module.split("."), *(alias.name for alias in node.names)]
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} from {node.module} import ...")
    return found


def test_no_private_attributes_of_other_libraries_outside_the_named_module() -> None:
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.relative_to(PACKAGE)) not in ALLOWED:
            uses += _private_uses(path)
    assert uses == []


def test_the_scan_finds_private_uses(tmp_path: Path) -> None:
    sample = PACKAGE / "_probe_for_test.py"
    try:
        sample.write_text("import torch\nfrom torch._C import x\ny = trainer._checkpoint_connector\nz = self._ok\n")
        assert [u.split(" ", 1)[1] for u in _private_uses(sample)] == [
            "from torch._C import ...",
            "trainer._checkpoint_connector",
        ]
    finally:
        sample.unlink()


def test_allowed_modules_say_why() -> None:
    for name in ALLOWED:
        assert "private" in (PACKAGE / name).read_text(encoding="utf-8").split('"""')[1].lower()


def test_the_private_torch_function_still_exists() -> None:
    torch = pytest.importorskip("torch")
    assert callable(getattr(torch.UntypedStorage, "_new_shared", None))
