"""Helpers for the reliability tests: the tiny fit command line and checkpoint files that are bad in one way each."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class RunsShell:
    """Pickles as a call to ``os.system(command)``: what a hostile checkpoint would run on load."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def write_bad_checkpoint(kind: str, folder: Path, good: Path) -> tuple[Path, Path]:
    """A checkpoint file that is ``kind``: empty, truncated, garbage, hostile or mismatched.

    Returns the file and a canary path that only a hostile file's payload would create.
    """
    path = folder / f"{kind}.ckpt"
    canary = folder / f"canary-{kind}"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "hostile":
        checkpoint = torch.load(good, map_location="cpu", weights_only=True)
        checkpoint["hyper_parameters"]["names"] = RunsShell(f"touch {canary}")
        torch.save(checkpoint, path)
    elif kind == "mismatched":  # another architecture: a layer missing, another with another shape
        checkpoint = torch.load(good, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
        state.pop("model.model.0.conv.weight")
        state["model.model.1.conv.weight"] = torch.zeros(7, 7, 3, 3)
        torch.save(checkpoint, path)
    else:
        raise ValueError(kind)
    return path, canary
