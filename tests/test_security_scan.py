"""The package never evaluates code, runs a shell, or unpickles without restriction: checked on the syntax tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_yolo"

RESTRICTED_UNPICKLER = PACKAGE / "models" / "unpickler.py"
"""Subclasses ``pickle.Unpickler`` with an allow-list of inert stand-ins: the one sanctioned unpickling path."""


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def call_problems(call: ast.Call) -> list[str]:
    """What is forbidden about one call (empty when it is fine)."""
    name = _dotted(call.func)
    last = name.rsplit(".", 1)[-1]
    problems = []
    if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
        problems.append(f"{name}()")
    if _is_true(_keyword(call, "shell")):
        problems.append(f"{name}(shell=True)")
    if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
        problems.append(f"{name}() (use yaml.safe_load)")
    if name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "marshal.loads"):
        problems.append(f"{name}()")
    if last == "load" and name.split(".")[0] in ("np", "numpy") and _is_true(_keyword(call, "allow_pickle")):
        problems.append(f"{name}(allow_pickle=True)")
    if name == "torch.load" and not _is_true(_keyword(call, "weights_only")):
        problems.append("torch.load() without weights_only=True")
    return problems


def import_problems(node: ast.Import | ast.ImportFrom) -> list[str]:
    """``from pickle import load`` and the like would hide a call from the check above."""
    if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "yaml", "torch", "builtins", "marshal"):
        bad = {"load", "loads", "unsafe_load", "full_load", "eval", "exec"}
        return [f"from {node.module} import {a.name}" for a in node.names if a.name in bad]
    return []


def scan_source(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden construct in ``source`` as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            found += [f"{filename}:{node.lineno}: {p}" for p in call_problems(node)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found += [f"{filename}:{node.lineno}: {p}" for p in import_problems(node)]
    return found


def test_package_has_no_code_execution_or_unrestricted_unpickling() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    found = [p for path in sources for p in scan_source(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


def test_the_restricted_unpickler_is_an_allow_list_subclass() -> None:
    tree = ast.parse(RESTRICTED_UNPICKLER.read_text(encoding="utf-8"))
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    unpicklers = [c for c in classes if any(_dotted(b) == "pickle.Unpickler" for b in c.bases)]
    assert unpicklers, "expected a pickle.Unpickler subclass"
    for cls in unpicklers:
        assert any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in cls.body), cls.name


@pytest.mark.parametrize(
    "source",
    [
        "eval('1')",
        "exec(code)",
        "subprocess.run('ls', shell=True)",
        "yaml.load(f)",
        "yaml.load(f, Loader=yaml.FullLoader)",
        "pickle.load(f)",
        "pickle.loads(b)",
        "np.load('x.npy', allow_pickle=True)",
        "numpy.load('x.npy', allow_pickle=True)",
        "torch.load('x.pt')",
        "torch.load('x.pt', weights_only=False)",
        "torch.load('x.pt', weights_only=flag)",
        "from pickle import loads",
    ],
)
def test_the_scan_catches(source: str) -> None:
    assert scan_source(source), source


@pytest.mark.parametrize(
    "source",
    [
        "yaml.safe_load(f)",
        "np.load('x.npy', allow_pickle=False)",
        "np.load('x.npy')",
        "torch.load('x.pt', map_location='cpu', weights_only=True)",
        "subprocess.run(['ls'], shell=False)",
        "class U(pickle.Unpickler):\n    def find_class(self, m, n): ...",
        "model.eval()",
        "'eval(' in text",
    ],
)
def test_the_scan_allows(source: str) -> None:
    assert scan_source(source) == [], source
