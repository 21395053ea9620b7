"""Command line: `python -m lightning_yolo ...`."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the requested subcommand."""
    parser = argparse.ArgumentParser(prog="python -m lightning_yolo", description="YOLOv5 training on Lightning")
    parser.parse_args(argv)
