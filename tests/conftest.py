"""Shared fixtures. Tests that need `../shared` use the `shared` fixture and skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only reference folder beside the project; skips the test when it is absent."""
    if not (SHARED / "README.md").is_file():
        pytest.skip("../shared is not present")
    return SHARED
