"""`python -m lightning_yolo` entry point."""

from lightning_yolo.cli import main

if __name__ == "__main__":
    main()
