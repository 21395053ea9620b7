"""Errors whose message is the whole story: the command line prints them as one line and exits non-zero."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a value that makes no sense (the message names the key, e.g. ``model.lr0``)."""


class CheckpointError(Exception):
    """A checkpoint cannot be used: missing, empty, corrupt, hostile, of another architecture, or non-finite."""


class NonFiniteError(FloatingPointError):
    """Training stopped because the loss or the gradients were NaN/inf too many times."""
